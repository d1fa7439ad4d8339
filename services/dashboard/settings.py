"""The dashboard's settings: the shared pieces plus where it listens and how much history it shows.

Environment: ``KAIZEN_DASHBOARD__HOST``, ``KAIZEN_DASHBOARD__PORT``, ``KAIZEN_DASHBOARD__WINDOW_MINUTES``,
... (prefix ``KAIZEN_``, nested with ``__``).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.settings import KaizenSettings


class DashboardOptions(BaseModel):
    host: str = Field("127.0.0.1", description="Address the dashboard binds (0.0.0.0 in containers).")
    port: int = Field(8090, ge=0, le=65535, description="Port of the dashboard page and its JSON API.")
    window_minutes: int = Field(
        180, ge=1, description="History shown: traces and rewards of the last this many minutes."
    )
    reward_buckets: int = Field(
        12, ge=1, le=120, description="Time buckets of the reward-distribution chart over the window in use."
    )
    max_runs: int = Field(50, ge=1, description="Most training and evaluation runs listed (newest first).")
    max_versions: int = Field(50, ge=1, description="Most model versions listed (newest first).")
    max_rollout_events: int = Field(
        2000, ge=1, description="rollout.stage events kept in memory for the canary timeline."
    )
    refresh_s: int = Field(15, ge=0, description="The page reloads itself every this many seconds; 0 never.")


class DashboardSettings(KaizenSettings):
    dashboard: DashboardOptions = Field(default_factory=DashboardOptions)  # type: ignore[arg-type]
