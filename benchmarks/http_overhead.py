"""HTTP against gRPC at concurrency 1, in one run: what the HTTP API adds per call.

One server process; the same clip classified alternately over gRPC (`Classify`) and over
REST (`POST /v1/models/{name}/classify`), and the same windows through v2 `ModelInfer`
over gRPC and over REST with binary tensors; one call at a time, each client keeping its
connection. Prints the median and p90 of each, and the HTTP minus gRPC medians.

    python -m benchmarks.http_overhead --model-repository models --model composer-cnn
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
import httpx
import numpy as np
import soundfile

from benchmarks.server_process import server_process
from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc


def _http_port(log_file: Path) -> int:
    for line in log_file.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("message") == "server started":
            return int(entry["http_port"])
    raise RuntimeError(f"no 'server started' line with http_port in {log_file}")


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _summary(name: str, samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    figures = {"median_ms": statistics.median(ordered),
               "p90_ms": ordered[int(0.9 * (len(ordered) - 1))]}  # fmt: skip
    print(f"  {name:<28} median {figures['median_ms']:7.2f} ms   p90 {figures['p90_ms']:7.2f} ms")
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the comparison and prints it (and --json, a file with the figures)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="composer-cnn")
    parser.add_argument("--clip", type=Path, default=Path("demo/clips/bach-bwv284.flac"))
    parser.add_argument("--rounds", type=int, default=200, help="calls per transport")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    log_file = Path(tempfile.mkdtemp()) / "server.log"
    with server_process(args.model_repository, {}, log_file) as server:
        http_base = f"http://127.0.0.1:{_http_port(log_file)}"
        channel = grpc.insecure_channel(server.address)
        native = pb_grpc.AudioClassifierStub(channel)
        inference = v2_grpc.GRPCInferenceServiceStub(channel)
        http = httpx.Client(base_url=http_base, timeout=60)
        info = http.get("/v1/models").json()["models"][0]
        window = int(info["window_samples"])
        rate = int(info["sample_rate_hz"])
        samples, clip_rate = soundfile.read(args.clip, dtype="float32")
        assert clip_rate == rate, "the clip must be at the model's rate"
        wav = io.BytesIO()
        soundfile.write(wav, samples[:window], rate, format="WAV", subtype="PCM_16")
        clip = wav.getvalue()  # one window of real music
        windows = np.ascontiguousarray(samples[:window][np.newaxis], dtype="<f4")
        request = pb.ClassifyRequest(
            model=pb.ModelRef(name=args.model), audio=clip,
            format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_WAV),
        )  # fmt: skip
        infer = v2.ModelInferRequest(model_name=args.model, raw_input_contents=[windows.tobytes()])
        infer.inputs.add(name="waveform", datatype="FP32", shape=list(windows.shape))
        infer.outputs.add(name="probabilities")
        header = json.dumps({
            "inputs": [{"name": "waveform", "shape": list(windows.shape), "datatype": "FP32",
                        "parameters": {"binary_data_size": windows.nbytes}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }).encode()  # fmt: skip
        calls: dict[str, Callable[[], object]] = {
            "gRPC Classify": lambda: native.Classify(request, timeout=60),
            "REST classify": lambda: http.post(
                f"/v1/models/{args.model}/classify", content=clip,
                headers={"content-type": "audio/wav"},
            ).raise_for_status(),
            "gRPC v2 ModelInfer": lambda: inference.ModelInfer(infer, timeout=60),
            "REST v2 infer (binary)": lambda: http.post(
                f"/v2/models/{args.model}/infer", content=header + windows.tobytes(),
                headers={"inference-header-content-length": str(len(header))},
            ).raise_for_status(),
        }  # fmt: skip
        for call in calls.values():
            for _ in range(args.warmup):
                call()
        timings: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.rounds):  # interleaved, so drift in the machine hits all alike
            for name, call in calls.items():
                timings[name].append(_timed(call))
        http.close()
        channel.close()
    print(f"{args.model}, one {window / rate:.1f} s window per call, concurrency 1, "
          f"{args.rounds} calls each, interleaved:")  # fmt: skip
    figures = {name: _summary(name, values) for name, values in timings.items()}
    for http_name, grpc_name in (("REST classify", "gRPC Classify"),
                                 ("REST v2 infer (binary)", "gRPC v2 ModelInfer")):  # fmt: skip
        extra = figures[http_name]["median_ms"] - figures[grpc_name]["median_ms"]
        ratio = figures[http_name]["median_ms"] / figures[grpc_name]["median_ms"]
        print(f"  {http_name} - {grpc_name}: {extra:+.2f} ms median ({ratio:.2f}x)")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
