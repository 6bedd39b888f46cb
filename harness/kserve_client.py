"""A small KServe v2 HTTP client that speaks JSON and Triton's binary tensor data extension the
way tritonclient does (Inference-Header-Content-Length, binary_data_size / binary_data
parameters): one keep-alive connection, request bodies built by infer_body."""

import http.client
import json
from typing import Dict, List, Optional, Tuple

import numpy as np

DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16,
          "INT32": np.int32, "INT64": np.int64, "FP16": np.float16, "FP32": np.float32,
          "FP64": np.float64}
DATATYPES = {np.dtype(v): k for k, v in DTYPES.items()}


class Response:
    def __init__(self, status: int, headers: Dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        length = self.headers.get("inference-header-content-length")
        text = self.body if length is None else self.body[:int(length)]
        return json.loads(text)

    def outputs(self) -> Dict[str, np.ndarray]:
        """Output tensors by name, from JSON data or the binary part."""
        header = self.json()
        offset = int(self.headers.get("inference-header-content-length", len(self.body)))
        tensors = {}
        for output in header["outputs"]:
            dtype = DTYPES[output["datatype"]]
            size = output.get("parameters", {}).get("binary_data_size")
            if size is None:
                tensors[output["name"]] = np.array(output["data"], dtype=dtype).reshape(
                    output["shape"])
            else:
                raw = self.body[offset:offset + size]
                offset += size
                tensors[output["name"]] = np.frombuffer(raw, dtype=dtype).reshape(
                    output["shape"])
        return tensors


class Client:
    """One keep-alive connection (http.client), like one tritonclient HTTP connection."""

    def __init__(self, host: str, port: int, timeout: float = 60):
        self.connection = http.client.HTTPConnection(host, port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes = b"",
                headers: Optional[Dict[str, str]] = None) -> Response:
        self.connection.request(method, path, body=body or None, headers=headers or {})
        response = self.connection.getresponse()
        data = response.read()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def get(self, path: str, headers=None) -> Response:
        return self.request("GET", path, headers=headers)

    def infer(self, model: str, inputs: Dict[str, np.ndarray], binary_inputs: bool = False,
              binary_outputs: bool = False, outputs: Optional[List[str]] = None,
              request_id: Optional[str] = None, headers=None) -> Response:
        body, extra = infer_body(inputs, binary_inputs, binary_outputs, outputs, request_id)
        return self.request("POST", f"/v2/models/{model}/infer", body,
                            {**extra, **(headers or {})})

    def close(self) -> None:
        self.connection.close()


def infer_body(inputs: Dict[str, np.ndarray], binary_inputs: bool = False,
               binary_outputs: bool = False, outputs: Optional[List[str]] = None,
               request_id: Optional[str] = None) -> Tuple[bytes, Dict[str, str]]:
    request: dict = {"inputs": []}
    if request_id is not None:
        request["id"] = request_id
    binary = b""
    for name, array in inputs.items():
        tensor = {"name": name, "datatype": DATATYPES[array.dtype], "shape": list(array.shape)}
        if binary_inputs:
            raw = np.ascontiguousarray(array).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            binary += raw
        else:
            tensor["data"] = array.flatten().tolist()
        request["inputs"].append(tensor)
    if outputs is not None:
        request["outputs"] = [{"name": name, "parameters": {"binary_data": binary_outputs}}
                              for name in outputs]
    elif binary_outputs:
        request["parameters"] = {"binary_data_output": True}
    header = json.dumps(request).encode()
    if not binary_inputs:
        return header, {"Content-Type": "application/json"}
    return header + binary, {"Inference-Header-Content-Length": str(len(header)),
                             "Content-Type": "application/octet-stream"}
