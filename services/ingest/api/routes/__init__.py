"""The intake's routers; each route reads its request, calls the intake and says how it went."""
