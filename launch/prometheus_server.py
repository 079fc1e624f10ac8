"""A real Prometheus server (Debian's ``prometheus`` package) on a free loopback port.

Used by the tests that scrape running CityEye processes: the scrape
targets and the rule files are given at construction and written to the
server's own temp dir::

    with PrometheusServer({"cityeye-gateway": ["127.0.0.1:9101"]}, scrape_interval_s=1) as prom:
        prom.wait_for("cityeye_ingest_readings_accepted_total > 0", timeout=60)
        prom.query("sum(cityeye_ingest_readings_accepted_total)")
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from launch.servers import HttpServer

__all__ = ["PrometheusServer", "prometheus_config"]


def prometheus_config(targets: dict[str, list[str]], scrape_interval_s: float = 15.0,
                      rule_files: list[str] | None = None) -> dict[str, Any]:
    """A ``prometheus.yml`` mapping: one scrape job per entry of ``targets`` (job name -> ``host:port`` list)."""
    interval = f"{scrape_interval_s:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": list(rule_files or []),
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(addrs)}]}
                           for job, addrs in targets.items()],
    }


class PrometheusServer(HttpServer):
    """``prometheus --config.file=...`` with its TSDB in a temp dir; :meth:`query` asks its HTTP API."""

    name = "prometheus"
    package = "prometheus"

    def __init__(self, targets: dict[str, list[str]], *, scrape_interval_s: float = 1.0,
                 rule_files: list[str | Path] = (), port: int | None = None,
                 workdir: str | Path | None = None) -> None:
        super().__init__(port, workdir)
        self.targets = targets
        self.scrape_interval_s = scrape_interval_s
        self.rule_files = [str(Path(f).resolve()) for f in rule_files]

    def command(self) -> list[str]:
        conf = self.workdir / "prometheus.yml"
        conf.write_text(yaml.safe_dump(prometheus_config(self.targets, self.scrape_interval_s, self.rule_files)))
        return [self.executable(), f"--config.file={conf}", f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]

    def ready(self) -> None:
        self.wait_for_http(f"{self.url}/-/ready", 200)

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>?params``'s ``data``; raises :class:`RuntimeError` on an error answer."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector: ``[{"metric": {...}, "value": [ts, "text"]}, ...]``."""
        return self.api("query", query=expr)["result"]

    def targets_report(self) -> str:
        """Each active scrape target's job, URL, health, last scrape duration and last error, one per line."""
        try:
            active = self.api("targets", state="active")["activeTargets"]
        except (OSError, RuntimeError, ValueError) as exc:  # the server itself is gone or answers nonsense
            return f"targets unknown: {exc!r}"
        return "\n".join(f"{t['labels'].get('job')} {t['scrapeUrl']}: {t['health']}, "
                         f"last scrape {t.get('lastScrapeDuration', 0):.3f} s, error {t.get('lastError') or 'none'}"
                         for t in active)

    def wait_for(self, expr: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns a non-empty vector.

        Raises :class:`TimeoutError` naming ``expr`` and, to say why, every
        scrape target's health and last error (:meth:`targets_report`).
        """
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus query {expr!r} still empty after {timeout:.0f} s; "
                                   f"scrape targets:\n{self.targets_report()}")
            time.sleep(0.5)
