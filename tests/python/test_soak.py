"""The soak's short form (bench/soak.py): 2.5 minutes of mixed traffic on one server, HTTP JSON,
HTTP binary and gRPC from 32 clients to three models with dynamic batching, 5% malformed, a model
reloaded every minute (two reloads). Nothing is lost, nothing gets a 5xx, every answer is the
expected one, and the resident memory after the warm-up minute stays within 5%. Latencies are
reported, not asserted (this machine is shared); the 30-minute form is
`python -m bench soak --minutes 30` (docs/serving.md, "Soak", has its figures: there the memory
grows past 5% before it settles). TORCHSHIP_SOAK_MINUTES sets the length here."""

import os

import pytest

from conftest import BUILD

pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] from PyPI")
from bench import soak  # noqa: E402

RSS_GROWTH = 0.05  # the bound the issue sets; glibc keeps some freed memory


def test_mixed_traffic_with_reloads_loses_nothing_and_holds_memory(cli, models, tmp_path,
                                                                    report):
    load = os.path.join(BUILD, "bin", "torchship-load")
    if not os.path.exists(load):
        pytest.skip("build/bin/torchship-load is built with gRPC only")
    minutes = float(os.environ.get("TORCHSHIP_SOAK_MINUTES", "2.5"))
    result = soak.run_soak(cli, load, models, minutes, reload_secs=60, folder=str(tmp_path))
    report("soak: " + soak.summary(result))
    assert result["exit_code"] == 0
    assert result["reload_failures"] == []
    assert result["reloads"] == int((minutes * 60 - 15) // 60)
    assert result["lost"] == 0
    assert result["server_errors"] == 0
    assert result["unexpected"] == {}
    assert result["server_log_errors"] == []
    assert all(figures["first_count"] > 0 and figures["last_count"] > 0
               for figures in result["latency"].values()), result["latency"]
    assert result["rss_mb"]["growth_after_warmup"] < RSS_GROWTH, result["rss_mb"]
