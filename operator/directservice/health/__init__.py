"""Active health checks of published instances: probes (probe.py), the one scheduler shared
by every DirectService (checker.py), and the child process the operator runs it in
(process.py, child.py). The verdict logic is pure and lives in core/health.py."""

from directservice.health.checker import Checks, HealthChecker
from directservice.health.probe import Prober, ProbeResult, probe
from directservice.health.process import CheckerProcess

__all__ = ["CheckerProcess", "Checks", "HealthChecker", "ProbeResult", "Prober", "probe"]
