"""`make demo`: start a server on the default model, stream the bundled clips, shut down.

Runs in the demo venv (proto, client and server; no torch). The server is a
child process (`python -m mozart_server`); each clip in demo/clips/ is streamed
through the client SDK at real-time pace, and every window's prediction, the
clip's true label (its file name starts with the composer) and the latency are
printed, then the demo's accuracy over clips and windows. The server is then
stopped with SIGTERM and must exit 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mozart_client import Client, Summary, WindowResult

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = ROOT / "models" / "composer-cnn" / "1"
CLIPS = ROOT / "demo" / "clips"


def missing_inputs(model_dir: Path, clips_dir: Path) -> list[str]:
    """What the demo needs and does not find, in words."""
    missing = [
        f"{model_dir / name} (the trainer publishes the default model there)"
        for name in ("model.onnx", "model.json")
        if not (model_dir / name).is_file()
    ]
    if not sorted(clips_dir.glob("*.flac")):
        missing.append(f"{clips_dir}/*.flac (the bundled real-music clips)")
    return missing


class ServerProcess:
    """`python -m mozart_server` on a free port; its JSON log lines are read in a thread."""

    def __init__(self, repository: Path) -> None:
        # Our own interpreter and fixed arguments: nothing untrusted reaches the command line.
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "mozart_server", "--model-repository", str(repository),
             "--host", "127.0.0.1", "--port", "0", "--metrics-host", "127.0.0.1",
             "--metrics-port", "0", "--http-port", "0",
             # This reads the JSON log, whatever APP_ENV says.
             "--log-format", "json",
             # No load balancer sits in front of the demo: stop at once on SIGTERM.
             "--drain-delay-s", "0"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.logs: list[dict[str, Any]] = []
        self._serving = threading.Event()
        threading.Thread(target=self._read_logs, daemon=True).start()

    def _read_logs(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = {"message": line.rstrip()}
            self.logs.append(entry)
            if entry.get("message") in (
                "serving",
                "no model version loaded; health stays NOT_SERVING",
            ):
                self._serving.set()
        self._serving.set()

    def wait_until_serving(self, timeout_s: float) -> str:
        """Returns the server's address once it reports SERVING."""
        if not self._serving.wait(timeout_s) or self.process.poll() is not None:
            raise RuntimeError(f"the server did not start; its log: {self.logs[-5:]}")
        if not any(entry.get("message") == "serving" for entry in self.logs):
            raise RuntimeError(f"the server loaded no model; its log: {self.logs[-5:]}")
        started = next(e for e in self.logs if e.get("message") == "server started")
        return f"127.0.0.1:{int(started['grpc_port'])}"

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, then the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


SMOOTHING = 0.5
"""EMA weight of the past: the demo shows smoothed labels, as a live display would."""


def true_label(clip: Path) -> str:
    """The composer a clip is by: its file name starts with it (`bach-bwv284.flac`)."""
    return clip.stem.split("-", 1)[0].lower()


@dataclass
class Tally:
    """Right answers so far: clips (by summary label) and windows (by smoothed label)."""

    clips: int = 0
    clips_right: int = 0
    windows: int = 0
    windows_right: int = 0

    def line(self) -> str:
        """The demo's accuracy, in words."""
        clip_share = self.clips_right / self.clips if self.clips else 0.0
        window_share = self.windows_right / self.windows if self.windows else 0.0
        return (
            f"demo accuracy: {self.clips_right}/{self.clips} clips right ({clip_share:.2f}), "
            f"{self.windows_right}/{self.windows} windows right ({window_share:.2f}, "
            "by smoothed label)"
        )


def _verdict(predicted: str, truth: str) -> str:
    return "right" if predicted == truth else "wrong"


def stream_clip(client: Client, clip: Path, model: str, realtime: bool, tally: Tally) -> None:
    """Streams one clip and prints a line per window (its smoothed label beside the true
    one), then the summary; counts what was right in `tally`."""
    truth = true_label(clip)
    print(f"\n{clip.name} (true label: {truth}; labels smoothed: EMA, weight {SMOOTHING})")
    print(
        f"  {'window':>6}  {'time (s)':>11}  {'smoothed':<14} {'score':>5}  {'true':<12} "
        f"{'':<5}  {'latency':>10}"
    )
    for result in client.stream(clip, model=model, realtime=realtime, smoothing=SMOOTHING):
        if isinstance(result, WindowResult):
            # From a server older than smoothed top-k, the raw one (the best there is).
            shown = result.smoothed_top_k or result.top_k
            label, score = (shown[0].label, shown[0].score) if shown else ("", 0.0)
            if result.silent:
                label, verdict = "(silent)", ""
            else:
                verdict = _verdict(label, truth)
                tally.windows += 1
                tally.windows_right += verdict == "right"
                label += "?" if result.low_confidence else ""
            latency = "-" if result.latency_ms is None else f"{result.latency_ms:.1f} ms"
            span = f"{result.start_ms / 1000:.1f}-{result.end_ms / 1000:.1f}"
            print(
                f"  {result.index:>6}  {span:>11}  {label:<14} {score:>5.2f}  {truth:<12} "
                f"{verdict:<5}  {latency:>10}"
            )
        elif isinstance(result, Summary):
            top = ", ".join(f"{s.label} {s.score:.2f}" for s in result.top_k[:3])
            windows = f"{result.window_count} window{'' if result.window_count == 1 else 's'}"
            flagged = "".join(
                f", {count} {what}"
                for count, what in (
                    (result.silent_window_count, "silent"),
                    (result.low_confidence_window_count, "low-confidence"),
                )
                if count
            )
            tally.clips += 1
            tally.clips_right += result.label == truth
            print(f"  summary over {windows}{flagged} (mean of raw scores): {top}")
            print(
                f"  predicted {result.label or '-'}, true {truth}: {_verdict(result.label, truth)}"
            )


def main() -> int:
    """Runs the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--clips", type=Path, default=CLIPS)
    parser.add_argument("--fast", action="store_true", help="stream as fast as accepted")
    args = parser.parse_args()
    missing = missing_inputs(args.model_dir, args.clips)
    if missing:
        print("make demo cannot run yet; missing:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    model_name = args.model_dir.parent.name
    server = ServerProcess(args.model_dir.parent.parent)
    try:
        address = server.wait_until_serving(timeout_s=180)
        print(f"server on {address}, model {model_name}")
        tally = Tally()
        with Client(address) as client:
            for clip in sorted(args.clips.glob("*.flac")):
                stream_clip(client, clip, model_name, realtime=not args.fast, tally=tally)
        print(f"\n{tally.line()}")
        print(
            "('?' marks a low-confidence window: its raw top score is below the model's "
            "threshold in model.json)"
        )
    finally:
        started = time.monotonic()
        code = server.stop() if server.process.poll() is None else server.process.returncode
        took_s = time.monotonic() - started
        print(f"\nserver stopped with SIGTERM: exit code {code} after {took_s:.1f} s")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
