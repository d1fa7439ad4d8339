"""The HTTP intake: FastAPI, one router per concern (OTLP, feedback, Langfuse's public API, health)."""
