"""Active health checks of published instances: probes (probe.py) and the one scheduler
shared by every DirectService of the process (checker.py). The verdict logic is pure and
lives in core/health.py."""

from directservice.health.checker import HealthChecker
from directservice.health.probe import Prober, ProbeResult, probe

__all__ = ["HealthChecker", "ProbeResult", "Prober", "probe"]
