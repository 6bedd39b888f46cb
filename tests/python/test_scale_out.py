"""Scale-out: two `torchship serve` replicas behind nginx (round robin, retrying the next upstream
on connection errors); one replica is killed mid-stream and no request is lost."""

import os
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

from harness.kserve_client import Client
from harness.server_process import Server, free_port, make_repository, wait_until_answering

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_config(folder: str, port: int, upstreams) -> str:
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;"
                        for p in upstreams)
    temp = "\n".join(f"  {kind}_temp_path {folder}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off;
{temp}
  upstream torchship {{
{servers}
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://torchship;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Inference is safe to repeat: retry POSTs too when a replica drops the connection.
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 2;
      proxy_connect_timeout 2s;
    }}
  }}
}}
"""


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")
def test_killing_a_replica_behind_nginx_loses_no_request(cli, models, tmp_path, report):
    repository = make_repository(str(tmp_path / "repository"), {
        "fashion": (os.path.join(models, "fashion_mnist.pt"), {"max_batch_size": 16})})
    replicas = [Server(cli, repository, "--threads", "1") for _ in range(2)]
    port = free_port()
    config = tmp_path / "nginx.conf"
    config.write_text(nginx_config(str(tmp_path), port, [r.port for r in replicas]))
    nginx = subprocess.Popen([NGINX, "-c", str(config), "-p", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_answering(port, timeout=10)
        image = np.zeros((1, 28, 28, 1), np.uint8)
        statuses = []
        stop = threading.Event()
        lock = threading.Lock()

        def stream():
            client = Client("127.0.0.1", port)
            while not stop.is_set():
                try:
                    status = client.infer("fashion", {"images": image}, binary_inputs=True,
                                          binary_outputs=True).status
                except OSError as error:  # the balancer itself dropped us
                    status = f"connection: {error}"
                    client = Client("127.0.0.1", port)
                with lock:
                    statuses.append(status)

        threads = [threading.Thread(target=stream) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        before_kill = len(statuses)
        replicas[0].kill()  # SIGKILL: no graceful shutdown, connections reset mid-request
        time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join()

        survivor = Client("127.0.0.1", replicas[1].port).get("/metrics").body.decode()
        served = sum(float(line.split()[-1]) for line in survivor.splitlines()
                     if line.startswith("torchship_requests_total{") and 'status="200"' in line)
        failures = [s for s in statuses if s != 200]
        assert before_kill > 20 and len(statuses) - before_kill > 20, len(statuses)
        assert failures == [], f"{len(failures)} of {len(statuses)} requests failed: " \
                               f"{failures[:3]}"
        assert served >= len(statuses) - before_kill  # the survivor took over the stream
        report(f"nginx scale-out: {len(statuses)} requests, {before_kill} before one of two "
               f"replicas was killed, 0 lost; the survivor answered {int(served)}")
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        for replica in replicas:
            if replica.process.poll() is None:
                replica.terminate()
