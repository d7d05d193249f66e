"""The live page at / in a real browser: Debian's Chromium, driven by Playwright, on a real server.

The server runs on 127.0.0.1:0 with the default model (composer-cnn/1) and the committed demo
clips (renderings of TEST-split works the model never trained on). Chromium's fake
microphone plays the Palestrina clip into getUserMedia, so "Listen" streams real music
through the page's AudioWorklet and WebSocket; a second test drops the Mozart clip on the
page, streams it and sends it whole, and compares both with gRPC Classify; the others check
what the page says when the server wants a token, does not serve the model or is busy,
and when the user denies the microphone. Screenshots (desktop and phone) go to
$MOZART_TEST_ARTIFACTS, else to tests/artifacts/browser/ (ignored by git).

Playwright drives /usr/bin/chromium (the Debian package in system-packages.txt); it never
downloads a browser of its own.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, expect, sync_playwright
from websockets.sync.client import connect

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.server import InProcessServer, running_server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
MODEL_DIR = ROOT / "models" / "composer-cnn" / "1"
CLIPS = ROOT / "demo" / "clips"
MICROPHONE_CLIP = CLIPS / "palestrina-Credo_57_a.flac"  # the model's surest demo clip
MICROPHONE_COMPOSER = "palestrina"
DROPPED_CLIP = CLIPS / "mozart-k458-movement1.flac"
MODEL = "composer-cnn"
HOP_MS = 500
LISTEN_HOP_MS = 250
TOKEN = "page-test-token"
TIMEOUT_MS = 30_000
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
HOLDER_CONFIG = {"format": {"encoding": "pcm_s16le", "sample_rate_hz": 16000, "channels": 1}}

# Generous: CI shares two cores among many tests; a stuck page still fails in 30 s.
expect.set_options(timeout=TIMEOUT_MS)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason="chromium (Debian package, in system-packages.txt)"
    ),
]


@pytest.fixture(scope="module")
def composer_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("page-models")
    shutil.copytree(MODEL_DIR, repository / MODEL / "1", ignore=shutil.ignore_patterns("optimize"))
    return repository


@pytest.fixture(scope="module")
def server(composer_repository: Path) -> Iterator[InProcessServer]:
    """One server for the module, wanting a bearer token (so every stream carries one)."""
    with running_server(composer_repository, auth_token=TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def busy_server(composer_repository: Path) -> Iterator[InProcessServer]:
    """A server that lets one client have one call or stream open at a time."""
    with running_server(composer_repository, client_calls_in_flight=1) as running:
        yield running


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("MOZART_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    folder = folder / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    # Chromium's fake capture device reads WAV only; it plays the file in a loop.
    samples, rate = soundfile.read(MICROPHONE_CLIP, dtype="float32")
    microphone = tmp_path_factory.mktemp("microphone") / "microphone.wav"
    soundfile.write(microphone, samples, rate, subtype="PCM_16")
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            "--use-fake-device-for-media-stream",  # pages get the microphone if granted
            f"--use-file-for-fake-audio-capture={microphone}",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    yield browser
    browser.close()


class PageErrors:
    """Uncaught exceptions of a page: a test ends by asserting there were none."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))


def open_page(
    browser: Browser, url: str, token: str | None = TOKEN, microphone: bool = True
) -> tuple[Page, PageErrors]:
    """A fresh browser context on `url`; with `token`, as a tab that was given it before;
    with `microphone`, as a user who allowed the microphone."""
    page = browser.new_page(viewport=DESKTOP, permissions=["microphone"] if microphone else [])
    page.set_default_timeout(TIMEOUT_MS)
    if token is not None:
        page.add_init_script(f"sessionStorage.setItem('mozart-token', {json.dumps(token)})")
    errors = PageErrors(page)
    page.goto(url)
    return page, errors


def set_hop(page: Page, hop_ms: int) -> None:
    page.get_by_text("Stream settings").click()
    page.get_by_label("Hop (ms between windows)").fill(str(hop_ms))


def wait_for_windows(page: Page, count: int) -> None:
    page.wait_for_function(
        f"Number(document.getElementById('window-count').textContent) >= {count}",
        timeout=TIMEOUT_MS,
    )


def drop_file(page: Page, path: Path, media_type: str) -> None:
    """Drops a file on the drop zone the way a drag from the desktop does (a DataTransfer)."""
    transfer = page.evaluate_handle(
        """([name, type, data]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type }));
            return transfer;
        }""",
        [path.name, media_type, base64.b64encode(path.read_bytes()).decode()],
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})


def grpc_classify(server: InProcessServer, clip: Path, hop_ms: int) -> pb.ClassifyResponse:
    with grpc.insecure_channel(server.address) as channel:
        response: pb.ClassifyResponse = pb_grpc.AudioClassifierStub(channel).Classify(
            pb.ClassifyRequest(
                model=pb.ModelRef(name=MODEL),
                format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_FLAC),
                audio=clip.read_bytes(),
                hop_ms=hop_ms,
                top_k=3,
            ),
            timeout=60,
            metadata=[("authorization", f"Bearer {TOKEN}")],
        )
    return response


def labels_of(composer_repository: Path) -> list[str]:
    manifest = json.loads((composer_repository / MODEL / "1" / "model.json").read_text())
    return list(manifest["labels"])


def test_listen_streams_the_microphone_and_the_summary_names_the_composer(
    browser: Browser, server: InProcessServer, composer_repository: Path, artifacts: Path
) -> None:
    page, errors = open_page(browser, server.http_url + "/")
    expect(page.get_by_label("Model", exact=True)).to_have_value(MODEL)
    set_hop(page, LISTEN_HOP_MS)
    page.get_by_role("button", name="Listen").click()

    wait_for_windows(page, 3)  # 3 s windows every 0.25 s: 3.5 s of microphone sound
    labels = labels_of(composer_repository)
    assert page.locator("#current-label").inner_text().lower() in labels
    expect(page.locator("#top-k li")).to_have_count(3)
    page.screenshot(path=artifacts / "listen-desktop-streaming.png", full_page=True)

    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#summary-label")).to_have_text(MICROPHONE_COMPOSER)
    windows = int(page.locator("#summary-windows").inner_text())
    assert windows >= 3
    assert float(page.locator("#summary-duration").inner_text().split()[0]) >= 3.5
    expect(page.locator("#summary-end")).to_have_text("complete")
    expect(page.locator("#error")).to_be_hidden()
    page.screenshot(path=artifacts / "listen-desktop-summary.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=artifacts / "listen-phone-summary.png", full_page=True)
    # Nothing on the phone layout is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert errors.errors == []
    page.close()


def test_a_dropped_file_streams_and_classifies_as_grpc_does(
    browser: Browser, server: InProcessServer, artifacts: Path
) -> None:
    expected = grpc_classify(server, DROPPED_CLIP, HOP_MS)
    expected_label = expected.summary.top_k[0].label
    page, errors = open_page(browser, server.http_url + "/")
    expect(page.get_by_label("Model", exact=True)).to_have_value(MODEL)
    set_hop(page, HOP_MS)
    drop_file(page, DROPPED_CLIP, "audio/flac")
    expect(page.locator("#file-name")).to_contain_text(DROPPED_CLIP.name)

    # Streamed over the WebSocket (decoded by the browser at the model's 16 kHz).
    page.get_by_label("Stream it as fast as the server takes it").check()
    page.get_by_role("button", name="Classify the file").click()
    expect(page.locator("#summary-label")).to_have_text(expected_label)
    expect(page.locator("#summary-windows")).to_have_text(str(len(expected.windows)))
    expect(page.locator("#window-count")).to_have_text(str(len(expected.windows)))

    # Sent whole to POST /v1/models/{name}/classify (decoded by the server).
    page.get_by_label("Send the whole file at once").check()
    page.get_by_role("button", name="Classify the file").click()
    expect(page.locator("#status")).to_have_text(f"Done: {len(expected.windows)} windows.")
    expect(page.locator("#summary-label")).to_have_text(expected_label)
    expect(page.locator("#error")).to_be_hidden()
    page.set_viewport_size(PHONE)
    page.screenshot(path=artifacts / "file-phone-whole.png", full_page=True)
    assert errors.errors == []
    page.close()


def test_a_silent_file_is_shown_as_silence_not_as_a_composer(
    browser: Browser, server: InProcessServer, tmp_path: Path
) -> None:
    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(5 * 16_000, dtype=np.float32), 16_000, subtype="PCM_16")
    page, errors = open_page(browser, server.http_url + "/")
    expect(page.get_by_label("Model", exact=True)).to_have_value(MODEL)
    drop_file(page, silence, "audio/wav")
    for pace in ("Stream it as fast as the server takes it", "Send the whole file at once"):
        page.get_by_label(pace).check()
        page.get_by_role("button", name="Classify the file").click()
        expect(page.locator(".verdict")).to_have_text("Only silence: nothing to classify.")
        expect(page.locator("#current-label")).to_have_text("(silence)")
        windows = page.locator("#summary-windows").inner_text()
        expect(page.locator("#summary-silent")).to_have_text(windows)
        expect(page.locator("#top-k li")).to_have_count(0)
    assert errors.errors == []
    page.close()


def focused_id(page: Page) -> str:
    return str(page.evaluate("document.activeElement.id || document.activeElement.value || ''"))


def test_an_unknown_model_and_a_denied_microphone_are_named_from_the_keyboard(
    browser: Browser, server: InProcessServer
) -> None:
    page, errors = open_page(browser, server.http_url + "/?model=no-such-model", microphone=False)
    expect(page.get_by_label("Model", exact=True)).to_have_value("no-such-model")
    page.locator("#file").set_input_files(DROPPED_CLIP)  # a file dialog is the OS's
    alert = page.get_by_role("alert")

    # Tab walks the controls in reading order; the pace is a radio group (arrow keys).
    order: list[str] = []
    while not order or order[-1] != "realtime":
        page.keyboard.press("Tab")
        order.append(focused_id(page))
        assert len(order) < 10, order
    assert [step for step in order if step in ("model", "file")] == ["model", "file"]
    page.keyboard.press("ArrowDown")
    expect(page.get_by_label("Stream it as fast as the server takes it")).to_be_checked()
    for expected in ("play-aloud", "classify-file"):
        page.keyboard.press("Tab")
        assert focused_id(page) == expected
    page.keyboard.press("Enter")
    expect(alert).to_have_attribute("data-code", "NOT_FOUND")
    expect(alert).to_contain_text("does not serve that model")
    expect(alert).to_contain_text("no-such-model")  # the server's own message names it
    expect(page.locator("#classify-file")).to_be_focused()  # focus came back after the run

    page.keyboard.press("Tab")
    assert focused_id(page) == "listen"
    page.keyboard.press("Enter")  # this user said no to the microphone
    expect(alert).to_have_attribute("data-code", "MIC_DENIED")
    expect(alert).to_contain_text("Microphone permission was denied")
    expect(page.locator("#listen")).to_be_focused()
    assert errors.errors == []
    page.close()


def test_a_server_that_wants_a_token_asks_for_it_and_then_streams(
    browser: Browser, server: InProcessServer, composer_repository: Path, artifacts: Path
) -> None:
    page, errors = open_page(browser, server.http_url + "/", token=None)
    alert = page.get_by_role("alert")
    expect(alert).to_have_attribute("data-code", "UNAUTHENTICATED")
    expect(alert).to_contain_text("needs an access token")
    token = page.get_by_label("Access token")
    expect(token).to_be_focused()
    expect(page.get_by_role("button", name="Listen")).to_be_disabled()
    page.screenshot(path=artifacts / "token-desktop-asked.png", full_page=True)

    token.fill("not-the-token")
    page.get_by_role("button", name="Use token").click()
    expect(alert).to_have_attribute("data-code", "UNAUTHENTICATED")

    token.fill(TOKEN)
    page.get_by_role("button", name="Use token").click()
    expect(page.get_by_label("Model", exact=True)).to_have_value(MODEL)
    expect(alert).to_be_hidden()
    page.locator("#file").set_input_files(DROPPED_CLIP)
    page.get_by_label("Stream it as fast as the server takes it").check()
    page.get_by_role("button", name="Classify the file").click()  # the token rides the config
    expect(page.locator("#summary-label")).to_be_visible()
    assert page.locator("#summary-label").inner_text() in labels_of(composer_repository)
    assert errors.errors == []
    page.close()


def test_a_busy_server_says_so(browser: Browser, busy_server: InProcessServer) -> None:
    page, errors = open_page(browser, busy_server.http_url + "/", token=None)
    expect(page.get_by_label("Model", exact=True)).to_have_value(MODEL)
    page.locator("#file").set_input_files(DROPPED_CLIP)
    page.get_by_label("Stream it as fast as the server takes it").check()
    stream_url = busy_server.http_url.replace("http://", "ws://") + f"/v1/models/{MODEL}/stream"
    with connect(stream_url, open_timeout=30) as holder:  # another stream of the same client
        holder.send(json.dumps(HOLDER_CONFIG))
        assert json.loads(holder.recv(timeout=30))["type"] == "ready"
        page.get_by_role("button", name="Classify the file").click()
        alert = page.get_by_role("alert")
        expect(alert).to_have_attribute("data-code", "RESOURCE_EXHAUSTED")
        expect(alert).to_contain_text("The server is busy")
        expect(page.get_by_role("button", name="Classify the file")).to_be_enabled()
    assert errors.errors == []
    page.close()
