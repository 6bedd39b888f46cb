"""The Python serving baseline a researcher would write: FastAPI + uvicorn (one worker), the
eager PyTorch pipeline, the KServe v2 JSON infer route. Used by bench/serve_bench.py.

    /usr/bin/python3 bench/python_server.py PORT [TORCH_THREADS]

TORCH_THREADS (default: torch's own choice) exists to show the baseline at its best: FastAPI runs
sync routes on a pool of 40 threads, and each request's torch ops then compete for the cores.
"""

import os
import sys

import torch
import uvicorn
from fastapi import FastAPI

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "examples", "fashion_mnist"))

import build  # noqa: E402
from model import FashionNet, FashionPipeline  # noqa: E402

DTYPES = {"UINT8": torch.uint8, "FP32": torch.float32, "INT64": torch.int64}

net = FashionNet()
net.load_state_dict(torch.load(build.cached_weights()))
models = {"fashion": FashionPipeline(net).eval()}
app = FastAPI()


@app.post("/v2/models/{name}/infer")
def infer(name: str, body: dict):
    tensor = body["inputs"][0]
    x = torch.tensor(tensor["data"], dtype=DTYPES[tensor["datatype"]]).reshape(tensor["shape"])
    with torch.no_grad():
        y = models[name](x)
    return {"model_name": name, "model_version": "1",
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": list(y.shape),
                         "data": y.flatten().tolist()}]}


if __name__ == "__main__":
    if len(sys.argv) > 2:
        torch.set_num_threads(int(sys.argv[2]))
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
