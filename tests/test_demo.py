"""The chat demo, driven through gradio_client as a browser would drive it.

One server (a tiny model whose answers depend on its input) serves every test; each test
opens its own client, i.e. its own browser session. The spy records what the model was
asked, so the tests check the history and the clips that reached it, not only the page.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import yaml
from demo_support import WINDOW_S, ModelSpy, tiny_demo_config, tiny_demo_model, write_clips
from gradio_client import Client, handle_file

from mullm import cli
from mullm.audio import load_audio, synth_clip, write_wav
from mullm.config import ModelConfig, from_dict
from mullm.data.schema import read_conversations
from mullm.demo import DemoConfig, ToneMusic, build_demo, load_demo_config
from mullm.demo.app import DemoApp
from mullm.demo.chat import ChatEngine
from mullm.demo.network import host_warning
from mullm.demo.session import ChatSession
from mullm.errors import ConfigError
from mullm.model import MusicLLM

ROOT = Path(__file__).resolve().parents[1]

GREEDY = (16, 0.0, 1.0, None)  # max new tokens, temperature, top-p, seed


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    model = tiny_demo_model(tmp_path_factory.mktemp("model"))
    spy = ModelSpy(model)
    music = ToneMusic(trigger="play")
    app = build_demo(model, DemoConfig(max_new_tokens=16, concurrency=2), music=music,
                     model_name="tiny-test", workdir=tmp_path_factory.mktemp("work"))
    url = app.launch(port=None, block=False, quiet=True)
    yield {"url": url, "model": model, "spy": spy, "music": music, "app": app}
    app.close()


def send(client: Client, text: str, paths: list[Path] = (), settings: tuple = GREEDY) -> tuple:
    message = {"text": text, "files": [handle_file(str(p)) for p in paths]}
    return client.predict(message, None, *settings, api_name="/send")


def text_of(message: dict) -> str:
    return "".join(c.get("text", "") for c in message["content"] if c.get("type") == "text")


def files_of(chat: list[dict]) -> list[str]:
    return [Path(c["file"]).name for m in chat for c in m["content"] if c.get("type") == "file"]


def test_streamed_answer_then_a_follow_up_that_needs_the_history(server, files):
    model, spy = server["model"], server["spy"]
    client = Client(server["url"], verbose=False)
    message = {"text": "What key is this in?", "files": [handle_file(str(files["f_minor"]))]}
    job = client.submit(message, None, 24, 0.0, 1.0, None, api_name="/send")
    updates = [out for out in job]
    chat, _, _, heard, picture = job.outputs()[-1]
    answer = text_of(chat[-1])
    alone = model.chat("<audio>\nWhat key is this in?", audio=str(files["f_minor"]),
                       max_new_tokens=24)
    assert answer == alone and answer  # the model's own answer, nothing lost or added
    # Streamed: the reply grew over several updates, each a prefix of the final answer.
    partial = [text_of(u[0][-1]) for u in updates if u[0] and u[0][-1]["role"] == "assistant"]
    growing = [p for p in dict.fromkeys(partial) if p]
    assert len(growing) >= 3, growing
    assert all(answer.startswith(p.rstrip()) for p in growing)
    # What the model heard: the clip, its rates, the whole clip used, and a spectrogram.
    assert "Clip 1: f_minor.wav" in heard and "22050 Hz" in heard and "16000 Hz" in heard
    assert "the whole clip" in heard
    assert Path(picture).read_bytes()[:4] == b"\x89PNG"

    chat = send(client, "And its tempo?")[0]
    conversation, media = spy.last_chat()
    assert conversation == [{"role": "user", "content": "<audio>\nWhat key is this in?"},
                            {"role": "assistant", "content": answer},
                            {"role": "user", "content": "And its tempo?"}]
    # The clip of turn 1 goes back with the history, decoded as the model decodes it.
    assert len(media["audio"]) == 1
    np.testing.assert_array_equal(media["audio"][0], load_audio(files["f_minor"], 16000))
    follow_up = text_of(chat[-1])
    assert follow_up == model.chat("And its tempo?", audio=str(files["f_minor"]),
                                   history=conversation[:2], max_new_tokens=16)


BAD_FILES = {"text_as_wav": "cannot decode audio", "empty": "empty (0 bytes)",
             "truncated_ogg": "truncated OGG", "m4a": "cannot decode audio"}


def test_bad_files_get_a_friendly_message_and_the_session_goes_on(server, files):
    spy = server["spy"]
    client = Client(server["url"], verbose=False)
    send(client, "Describe it.", [files["c_major"]])
    calls = len(spy.calls)
    for kind, reason in BAD_FILES.items():
        chat = send(client, "And this one?", [files[kind]])[0]
        notice = chat[-1]
        assert notice["metadata"]["title"] == "Could not use a file", kind
        body = text_of(notice)
        assert f"Could not use {files[kind].name}" in body and reason in body, body
        assert "Nothing was sent to the model" in body
        assert "Traceback" not in body and "/tmp" not in body  # no trace, no server path
    assert len(spy.calls) == calls  # the model was never called for them
    # The session goes on, and the rejected turns are not part of the history.
    send(client, "Go on.")
    conversation, media = spy.last_chat()
    assert [m["content"] for m in conversation[::2]] == ["<audio>\nDescribe it.", "Go on."]
    assert len(media["audio"]) == 1


def test_limits_from_the_config_are_enforced(server, files, tmp_path):
    from PIL import Image

    spy = server["spy"]
    engine = ChatEngine(server["model"], DemoConfig(max_upload_mb=0.5, max_audio_s=5.0))
    session = ChatSession(tmp_path / "s", "chunk")
    picture = tmp_path / "cover.png"
    Image.new("RGB", (64, 64), "red").save(picture)
    stereo = np.stack([synth_clip(duration_s=4.0, sample_rate=48000)] * 2, axis=1)
    big = write_wav(tmp_path / "big.wav", stereo, 48000)  # 768 kB, 4 s
    calls = len(spy.calls)
    expected = {
        files["long"]: "it is 0:09 long; this demo accepts clips up to 0:05 (5 s)",
        big: "it is 0.8 MB; the limit is 0.5 MB",
        picture: "this model takes no images",
    }
    for path, message in expected.items():
        list(engine.respond(session, "Look.", [str(path)], None, GREEDY))
        assert f"Could not use {path.name}: {message}" in session.display[-1]["content"]
    assert len(spy.calls) == calls and session.turns == []
    # The model's own limit: at most max_items clips per conversation.
    engine.max_clips = 2
    list(engine.respond(session, "Two.", [str(files["c_major"])] * 3, None, GREEDY))
    assert "takes at most 2 clips per conversation" in session.display[-1]["content"]


def test_a_failing_music_hook_leaves_the_answer_standing(server, tmp_path):
    def broken(messages: list, media: dict) -> list:
        raise RuntimeError("decoder out of memory")

    engine = ChatEngine(server["model"], DemoConfig(), music=broken)
    session = ChatSession(tmp_path / "s", "chunk")
    list(engine.respond(session, "Play something.", [], None, GREEDY))
    assert len(session.turns) == 1 and session.turns[0].reply
    notice = session.display[-1]
    assert notice["metadata"]["title"] == "No music"
    assert "(RuntimeError: decoder out of memory); the text answer above stands" in \
        notice["content"]


def test_images_and_clips_attach_to_the_turn_they_were_given_in(files, tmp_path):
    from PIL import Image

    cfg = tiny_demo_config(tmp_path)
    cfg["modalities"]["image"] = {
        "encoder": {"name": "tiny_image"},
        "adapter": {"name": "mlp", "hidden_size": 32, "pool": "mean", "pool_frames": 4},
        "injection": {"kind": "splice"}}
    model = MusicLLM(from_dict(ModelConfig, cfg)).eval()
    spy = ModelSpy(model)
    engine = ChatEngine(model, DemoConfig(max_new_tokens=4))
    session = ChatSession(tmp_path / "s", "chunk")
    cover = tmp_path / "cover.png"
    Image.new("RGB", (40, 30), (255, 0, 0)).save(cover)
    list(engine.respond(session, "Here is a clip.", [str(files["c_major"])], None, GREEDY))
    list(engine.respond(session, "And the cover art.", [str(cover)], None, GREEDY))
    list(engine.respond(session, "Another clip.", [str(files["f_minor"])], None, GREEDY))
    conversation, media = spy.last_chat()
    assert [m["content"] for m in conversation[::2]] == [
        "<audio>\nHere is a clip.", "<image>\nAnd the cover art.", "<audio>\nAnother clip."]
    assert len(media["audio"]) == 2 and len(media["image"]) == 1
    red = media["image"][0]  # a tensor-only encoder gets RGB in [0, 1]
    assert tuple(red.shape) == (3, 30, 40) and float(red[0].mean()) == 1.0
    assert "**Image 1: cover.png**: 40x30 pixels." in session.heard_markdown()


def test_a_long_clip_is_heard_whole_through_the_captioning_path(server, files):
    spy = server["spy"]
    client = Client(server["url"], verbose=False)
    calls = len(spy.calls)
    chat, _, _, heard, _ = send(client, "What happens in this track?", [files["long"]])
    made = spy.calls[calls:]
    # Three windows (0-4, 4-8, 8-9 s), each captioned with its audio, then a text summary.
    segment_calls = [c for c in made[:-1] if c[1].get("audio")]
    assert [len(c[1]["audio"][0]) for c in segment_calls] == [64000, 64000, 16000]
    assert any("descriptions of consecutive parts" in c[0][0]["content"] for c in made[:-1])
    conversation, media = made[-1]
    assert "audio" not in media  # the model reads the whole-track description instead
    assert conversation[-1]["content"].startswith('[Audio 1 "long.wav", 0:09 long, was heard '
                                                  "in 3 parts")
    assert "Whole track:" in conversation[-1]["content"]
    assert "chunked, heard in 3 windows (0:00-0:04, 0:04-0:08, 0:08-0:09)" in heard
    notes = [m for m in chat if (m.get("metadata") or {}).get("title", "").startswith(
        "Listening to all of clip 1")]
    assert notes and "Whole track:" in text_of(notes[0])


def test_first_window_mode_uses_only_the_first_window(server, files, tmp_path):
    spy = server["spy"]
    engine = ChatEngine(server["model"], DemoConfig(long_audio="first"))
    session = ChatSession(tmp_path / "s", "first")
    list(engine.respond(session, "What is it?", [str(files["long"])], None, GREEDY))
    conversation, media = spy.last_chat()
    assert conversation[-1]["content"] == "<audio>\nWhat is it?"
    assert len(media["audio"][0]) == int(WINDOW_S * 16000)
    assert "only 0:00-0:04 is used" in session.heard_markdown()
    assert session.clips[0].spectrogram.read_bytes()[:4] == b"\x89PNG"


def test_two_sessions_at_once_each_get_their_own_answer(server, files):
    model, spy = server["model"], server["spy"]
    asks = [("What key is this in?", files["c_major"]), ("Which instrument?", files["f_minor"])]
    alone = [model.chat(f"<audio>\n{q}", audio=str(p), max_new_tokens=16) for q, p in asks]
    assert alone[0] != alone[1]
    clients = [Client(server["url"], verbose=False) for _ in asks]
    results: dict[int, str] = {}
    spy.meet = threading.Barrier(2, timeout=20)  # both generations must run at once
    try:
        def ask(i: int) -> None:
            chat = send(clients[i], asks[i][0], [asks[i][1]])[0]
            results[i] = text_of(chat[-1])

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        spy.meet = None
    # Whitespace is compared loosely: the chat shows the streamed text, in which the tiny
    # model's stray tab can come out as a space; the words must be the same.
    def words(text: str | None) -> list[str]:
        return (text or "").split()

    assert [words(results.get(0)), words(results.get(1))] == [words(a) for a in alone]


def test_stop_really_stops_generation(server, files):
    spy = server["spy"]
    client = Client(server["url"], verbose=False)
    spy.token_delay_s = 0.1  # a slow model: all 300 tokens would take 30 s
    try:
        calls = len(spy.calls)
        job = client.submit({"text": "Tell me everything.", "files": []}, None, 300, 0.0, 1.0,
                            None, api_name="/send")
        while len(spy.calls) == calls:  # generation has started
            time.sleep(0.05)
        time.sleep(0.5)
        client.predict(api_name="/stop")
        chat = job.result(timeout=60)[0]
    finally:
        spy.token_delay_s = 0.0
    # Generation itself ended early (not just the display), and the chat says so.
    assert spy.new_tokens[-1] < 150
    last = chat[-1]
    assert "(stopped)" in text_of(last) or (last.get("metadata") or {}).get("title") == "Stopped"


def test_music_output_is_shown_and_can_be_edited_in_the_next_turn(server, files, tmp_path):
    spy, music = server["spy"], server["music"]
    client = Client(server["url"], verbose=False)
    chat = send(client, "Describe this.", [files["c_major"]])[0]
    assert not any(name.startswith("gen-") for name in files_of(chat))  # no trigger word
    chat = send(client, "Now play something like it.")[0]
    reply = text_of(chat[-3])
    messages, media = music.calls[-1]
    assert messages[-1] == {"role": "assistant", "content": reply}
    assert len(media["audio"]) == 1
    assert files_of(chat)[-1] == "gen-1.wav"
    assert "Generated clip 1 (mode: stand-in, 1.0 s)" in text_of(chat[-1])
    tone = music(messages, media)[0].waveform

    status, heard = client.predict(api_name="/attach_generated")
    assert "Generated clip 1 will be attached" in status and "generated clip 1" in heard
    chat, _, _, heard, _ = send(client, "Make it slower.")
    conversation, media = spy.last_chat()
    assert conversation[-1]["content"] == "<audio>\nMake it slower."
    assert len(media["audio"]) == 2
    np.testing.assert_allclose(media["audio"][1], tone, atol=1e-3)  # 16-bit WAV round trip
    assert "Clip 2: gen-1.wav** (generated)" in heard

    # The conversation exports as valid schema data, with every clip and the music.
    exported, status = client.predict(api_name="/export")
    assert exported["visible"] and status.startswith("Exported 3 turn(s)")
    jsonl, archive = exported["value"]
    local = tmp_path / "export"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(local)
    [conv] = read_conversations(next(local.rglob("conversation.jsonl")))
    assert conv.task == "generate" and conv.source == "mullm-demo"
    assert [t["role"] for t in conv.turns] == ["user", "assistant"] * 3
    assert conv.turns[0]["content"] == "<audio>\nDescribe this."
    assert all(p.is_file() for p in conv.audio_paths()) and len(conv.audio) == 2
    assert conv.meta["turns"][1]["generated_audio"][0]["mode"] == "stand-in"
    assert Path(jsonl).read_text() == next(local.rglob("conversation.jsonl")).read_text()


def test_a_recording_joins_its_message_and_clear_starts_anew(server, files):
    spy = server["spy"]
    client = Client(server["url"], verbose=False)
    # A microphone recording goes with the message it was recorded for.
    heard = client.predict({"text": "Describe it.", "files": []},
                           handle_file(str(files["c_major"])), *GREEDY, api_name="/send")[3]
    assert "**Clip 1: recording-1.wav** (microphone)" in heard
    assert spy.last_chat()[0][-1]["content"] == "<audio>\nDescribe it."
    chat, *_ = client.predict(api_name="/clear")
    assert chat == []
    assert client.predict(api_name="/export")[1].startswith("Export: there is nothing")
    send(client, "Hello again.")
    conversation, media = spy.last_chat()
    assert conversation == [{"role": "user", "content": "Hello again."}] and media == {}


def test_bad_generation_settings_are_explained(server):
    client = Client(server["url"], verbose=False)
    chat = send(client, "Hi.", settings=(16, 0.5, 1.0, -3))[0]
    assert chat[-1]["metadata"]["title"] == "Not sent"
    assert "seed must be a whole number >= 0 (or empty), got -3" in text_of(chat[-1])


# ---------------------------------------------------------------- the command, safe defaults

# Runs `mullm demo` with an audit hook that logs every IP socket connect, bind and name lookup.
AUDITED = r"""
import json, socket, sys
log = open(sys.argv[1], "a", buffering=1)
def hook(event, args):
    if event in ("socket.connect", "socket.bind"):
        sock, address = args
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            log.write(json.dumps({event[7:]: str(address[0])}) + "\n")
    elif event == "socket.getaddrinfo":
        log.write(json.dumps({"resolve": str(args[0])}) + "\n")
sys.addaudithook(hook)
from mullm.cli import main
sys.exit(main(sys.argv[2:]))
"""
LOCAL = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(scope="module")
def model_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_demo_config(path.parent)))
    return path


def test_starting_the_demo_opens_no_outbound_connection(model_yaml, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "sockets.jsonl"
    # The command itself must turn analytics, telemetry and the hub off: none of it is set.
    env = {k: v for k, v in os.environ.items() if k not in (
        "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "GRADIO_ANALYTICS_ENABLED")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-c", AUDITED, str(log), "demo", "--model", str(model_yaml),
         "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the demo did not start in 120 s"
                time.sleep(0.5)
        assert b"mullm chat" in page
        time.sleep(1.0)  # anything launched in the background (version checks) runs by now
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    outbound = [e for e in events if any(v not in LOCAL for v in e.values())]
    assert outbound == [], outbound
    assert {"bind": "127.0.0.1"} in events  # it served, on loopback only
    assert "gradio.live" not in out and "warning" not in out
    assert f"at http://127.0.0.1:{port}/ (this machine only)" in out


def test_the_command_warns_before_serving_beyond_this_machine(model_yaml, monkeypatch,
                                                              capsys):
    seen: dict = {}
    monkeypatch.setattr(DemoApp, "launch", lambda self, **kw: seen.update(kw) or "http://x/")
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    argv = ["demo", "--model", str(model_yaml), "--host", "0.0.0.0", "--port", "7999"]
    assert cli.main(argv) == 0
    assert "warning: --host 0.0.0.0 serves the demo to every machine" in capsys.readouterr().err
    assert seen == {"host": "0.0.0.0", "port": 7999, "share": False, "block": False,
                    "quiet": True}
    assert host_warning("127.0.0.1") is None
    assert cli.main(["demo", "--model", "no-such-model"]) == 2
    assert "mullm demo: error: 'no-such-model' is not a model directory" in \
        capsys.readouterr().err


def test_demo_config_is_read_strictly(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("max_upload_mb: 5\nlong_audio: first\n")
    cfg = load_demo_config(path, concurrency=3)
    assert (cfg.max_upload_bytes, cfg.long_audio, cfg.concurrency) == (5_000_000, "first", 3)
    path.write_text("max_upload_md: 5\n")
    with pytest.raises(ConfigError, match="did you mean 'max_upload_mb'"):
        load_demo_config(path)
    with pytest.raises(ConfigError, match="long_audio"):
        load_demo_config(None, long_audio="middle")


def test_the_real_music_output_path_in_the_demo(tiny_llm_dir, tiny_musicgen_dir, files, tmp_path,
                                                monkeypatch):
    """The demo's music hook wired as ``mullm demo`` wires it (``model.render_music``) on a
    model with output tokens, a projector and the tiny MusicGen: a reply that asks for music
    (its [AUD] run) becomes a playable clip made through the projector, the chat shows the
    reply without the tokens, and the clip goes back in as audio on the next turn."""
    from conftest import music_model_dict

    import mullm.streaming
    from mullm.config import load_model_config
    from mullm.outputs.vocab import output_token_text

    model = MusicLLM(load_model_config(music_model_dict(tiny_llm_dir, tiny_musicgen_dir))).eval()
    reply = f"Here is a calm piano piece. {output_token_text(4)}"
    real_stream = mullm.streaming.stream_chat
    monkeypatch.setattr(mullm.streaming, "stream_chat",
                        lambda *a, **k: iter([reply[:10], reply[10:]]))
    engine = ChatEngine(model, DemoConfig(max_new_tokens=4), music=model.render_music)
    session = ChatSession(tmp_path / "s", "chunk")
    list(engine.respond(session, "Compose something calm.", [], None, GREEDY))
    shown = [m["content"] for m in session.display if isinstance(m.get("content"), str)]
    assert "Here is a calm piano piece." in shown and not any("[AUD" in t for t in shown)
    assert session.turns[-1].reply == reply  # the history keeps the tokens
    [clip] = session.generated
    assert clip.mode == "projector" and clip.sample_rate == 32000
    assert clip.duration_s == pytest.approx(0.4) and clip.path.is_file()
    # The editing loop: the clip is attached to the next turn and reaches the model.
    monkeypatch.setattr(mullm.streaming, "stream_chat", real_stream)
    spy = ModelSpy(model)
    engine.attach_last_generated(session)
    list(engine.respond(session, "Make it slower.", [], None, GREEDY))
    conversation, media = spy.last_chat()
    assert conversation[-1]["content"] == "<audio>\nMake it slower."
    assert len(media["audio"]) == 1
