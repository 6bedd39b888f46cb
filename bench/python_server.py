"""The Python serving baseline a researcher would write: FastAPI + uvicorn (one worker), the
eager PyTorch pipeline, the KServe v2 JSON infer route. Used by bench/serve_bench.py.

    /usr/bin/python3 -m bench python_server PORT [TORCH_THREADS]

TORCH_THREADS (default: torch's own choice) exists to show the baseline at its best: FastAPI runs
sync routes on a pool of 40 threads, and each request's torch ops then compete for the cores.
"""

import argparse
from typing import List, Optional

from bench.example_modules import example_module


def make_app():
    """The FastAPI app serving the trained Fashion-MNIST pipeline as "fashion"."""
    import torch
    from fastapi import FastAPI
    build = example_module("fashion_mnist", "build")
    fashion = example_module("fashion_mnist", "model")
    dtypes = {"UINT8": torch.uint8, "FP32": torch.float32, "INT64": torch.int64}
    net = fashion.FashionNet()
    net.load_state_dict(torch.load(build.cached_weights()))
    models = {"fashion": fashion.FashionPipeline(net).eval()}
    app = FastAPI()

    @app.post("/v2/models/{name}/infer")
    def infer(name: str, body: dict):
        tensor = body["inputs"][0]
        x = torch.tensor(tensor["data"], dtype=dtypes[tensor["datatype"]]).reshape(
            tensor["shape"])
        with torch.no_grad():
            y = models[name](x)
        return {"model_name": name, "model_version": "1",
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": list(y.shape),
                             "data": y.flatten().tolist()}]}
    return app


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("torch_threads", type=int, nargs="?",
                        help="intra-op threads (default: torch's own choice)")
    args = parser.parse_args(argv)
    import torch
    import uvicorn
    app = make_app()
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
