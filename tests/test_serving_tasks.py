"""NER and language-model exports behind scripts/serve.py, over real HTTP on 127.0.0.1:
entities with character offsets, continuations (from a run's Keras model and from an LM
export's TFLite prefill/decode file), and ``:generate`` streamed as server-sent events read
incrementally by a real client."""
import http.client
import json
import random
import time

import pytest

from serving_fixture import (Server, call, make_lm_export, make_lm_run, make_ner_export,
                             ner_sentence)

pytestmark = pytest.mark.integration  # starts the server
KEY = "task-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("tasks")
    ner = make_ner_export(str(root), data_dir)
    lm_dir, model, tok = make_lm_run(str(root), data_dir)
    lm_export = make_lm_export(lm_dir, model, tok, str(root / "lm_export"))
    keys = root / "keys.txt"
    keys.write_text(KEY + "\n")
    # Batches on the event loop (--num_workers=0); streams then run on the loop's executor.
    # "lm" is the run (Keras), "lmx" its export (TFLite, the default --format).
    s = Server(f"--model=ner={ner}", f"--model=lm={lm_dir}", f"--model=lmx={lm_export}",
               f"--api_keys_file={keys}", "--max_new_tokens=300", "--max_chars=100",
               "--num_workers=0")
    yield s, model, tok, lm_export
    s.stop()


def _expected(text, names):
    """Entities by hand: each (word, type) found in ``text`` after the previous one."""
    out, at = [], 0
    for word, kind in names:
        start = text.index(word, at)
        out.append({"text": word, "type": kind, "start": start, "end": start + len(word)})
        at = start + len(word)
    return out


def test_ner_entities_with_character_offsets(served):
    s = served[0]
    rng = random.Random(99)  # other name/city/filler combinations than training
    texts = [ner_sentence(rng)[0] for _ in range(3)]
    texts.append("I  met Eve in   Rome again .")  # extra spaces: offsets into the raw text
    status, body = call(s.url + "/v1/models/ner:predict", {"instances": texts}, AUTH)
    assert status == 200, body
    for text, pred in zip(texts, body["predictions"]):
        words = text.split()
        assert pred["entities"] == _expected(text, [(words[2], "PER"), (words[4], "LOC")])
    assert body["predictions"][3]["entities"] == [
        {"text": "Eve", "type": "PER", "start": 7, "end": 10},
        {"text": "Rome", "type": "LOC", "start": 16, "end": 20}]
    # Columnar form and the metadata name the task and its tags.
    cols = call(s.url + "/v1/models/ner/versions/1:predict", {"inputs": texts[:2]}, AUTH)[1]
    assert cols["outputs"]["entities"] == [p["entities"] for p in body["predictions"][:2]]
    meta = call(s.url + "/v1/models/ner/metadata", headers=AUTH)[1]["metadata"]
    assert meta["task"] == "ner" and set(meta["labels"]) == {"O", "B-PER", "I-PER", "B-LOC",
                                                           "I-LOC"}


def _events(s, body, headers=AUTH, model="lm"):
    """(status, [(seconds since the request, event, data)]) read line by line as they come."""
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
    start = time.perf_counter()
    conn.request("POST", f"/v1/models/{model}:generate", json.dumps(body),
                 {"Content-Type": "application/json", **headers})
    resp = conn.getresponse()
    if resp.status != 200:
        out = resp.status, json.loads(resp.read())
        conn.close()
        return out
    assert resp.getheader("content-type").startswith("text/event-stream")
    events, name = [], None
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.decode("utf-8").rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((time.perf_counter() - start, name, json.loads(line[len("data: "):])))
    conn.close()
    return 200, events


def test_lm_predict_and_streamed_generate_match_in_process_generation(served):
    from slm_tf.generation import SamplingConfig, generate
    s, model, tok, _ = served
    # :predict with settings in the request; the oracle is the library run on the same model.
    greedy = generate(model, tok, ["the", "a cat"], SamplingConfig(max_new_tokens=20,
                                                                    temperature=0))
    status, body = call(s.url + "/v1/models/lm:predict",
                        {"instances": ["the", "a cat"], "max_new_tokens": 20, "temperature": 0},
                        AUTH)
    assert status == 200, body
    assert [p["text"] for p in body["predictions"]] == greedy
    assert {p["stop_reason"] for p in body["predictions"]} <= {"length", "eod"}

    # :generate streams one event per token, then the end event with the stop reason.
    cfg = SamplingConfig(max_new_tokens=60, temperature=1.0, top_k=20, top_p=0.9, seed=5)
    expected = generate(model, tok, ["the"], cfg)[0]
    status, events = _events(s, {"prompt": "the", "max_new_tokens": 60, "temperature": 1.0,
                                 "top_k": 20, "top_p": 0.9, "seed": 5})
    assert status == 200
    tokens = [e for e in events if e[1] == "token"]
    end = events[-1]
    assert end[1] == "end" and end[2]["stop_reason"] in ("length", "eod"), end
    assert "".join(e[2]["text"] for e in tokens) == end[2]["text"] == expected
    assert len(tokens) > 10 and [e[2]["index"] for e in tokens] == list(range(len(tokens)))
    # Incremental: the first token arrived long before the generation finished.
    assert tokens[0][0] < 0.5 * end[0], (tokens[0][0], end[0])

    # A stop string cuts the text before it and ends the stream with "stop".
    stop = expected[5:8]
    status, events = _events(s, {"prompt": "the", "max_new_tokens": 60, "temperature": 1.0,
                                 "top_k": 20, "top_p": 0.9, "seed": 5, "stop": [stop]})
    assert events[-1][2]["stop_reason"] == "stop"
    assert events[-1][2]["text"] == expected[:expected.index(stop)]


def test_lm_export_served_from_its_tflite_file_continues_like_keras(served):
    from slm_tf.generation import SamplingConfig, generate
    from slm_tf.serving.predictors import load_predictor
    s, model, tok, export = served
    # The second prompt (31 ids with the end-of-document id) and its 30 new tokens run past
    # the 24-token context: the exported cache's sliding window against the Keras model's.
    prompts = ["the", "the dog sat on the log. a bird"]
    greedy = SamplingConfig(max_new_tokens=30, temperature=0)
    want = [generate(model, tok, [p], greedy)[0] for p in prompts]  # the oracle: Keras
    assert sum(len(t) for t in want) > 20  # the untrained model does say something
    status, body = call(s.url + "/v1/models/lmx:predict",
                        {"instances": prompts, "max_new_tokens": 30, "temperature": 0}, AUTH)
    assert status == 200, body
    assert [p["text"] for p in body["predictions"]] == want

    # Sampled and streamed from the TFLite file: the same seed gives the same text.
    cfg = {"max_new_tokens": 60, "temperature": 1.0, "top_k": 20, "top_p": 0.9, "seed": 7}
    expected = generate(model, tok, ["the"], SamplingConfig(**cfg))[0]
    status, events = _events(s, {"prompt": "the", **cfg}, model="lmx")
    assert status == 200 and events[-1][1] == "end", events[-1:]
    tokens = [e for e in events if e[1] == "token"]
    assert "".join(e[2]["text"] for e in tokens) == events[-1][2]["text"] == expected
    assert len(tokens) > 10
    meta = call(s.url + "/v1/models/lmx/metadata", headers=AUTH)[1]["metadata"]
    assert meta["task"] == "lm"

    # --format=saved_model runs the export's SavedModel prefill/decode signatures.
    predictor = load_predictor(export, "saved_model")
    got = predictor.predict(predictor.new_runner(), prompts, greedy)
    assert [p["text"] for p in got] == want


def test_generate_limits_and_errors(served):
    s = served[0]
    ok = {"prompt": "the", "max_new_tokens": 5}
    cases = [({**ok, "max_new_tokens": 301}, AUTH, 413, "limit"),
             ({**ok, "prompt": "x" * 101}, AUTH, 413, "limit"),
             ({**ok, "stop": ["s"] * 9}, AUTH, 413, "limit"),
             ({**ok, "temperature": -1}, AUTH, 400, "temperature"),
             ({**ok, "top_p": 0}, AUTH, 400, "top_p"),
             ({**ok, "top_k": 1.5}, AUTH, 400, "top_k"),
             ({**ok, "max_new_tokens": "9"}, AUTH, 400, "max_new_tokens"),
             ({"max_new_tokens": 5}, AUTH, 400, "prompt"),
             (ok, {}, 401, "key"),
             (ok, {"Authorization": "Bearer nope"}, 401, "key")]
    for body, headers, code, word in cases:
        status, reply = _events(s, body, headers)
        assert status == code and set(reply) == {"error"} and word in reply["error"], \
            (body, status, reply)
    assert call(s.url + "/v1/models/nope:generate", ok, AUTH)[0] == 404
    assert call(s.url + "/v1/models/lm/versions/3:generate", ok, AUTH)[0] == 404
    status, reply = call(s.url + "/v1/models/ner:generate", ok, AUTH)
    assert status == 400 and "language models" in reply["error"]
    # The same limits hold for :predict on a language model.
    assert call(s.url + "/v1/models/lm:predict", {"instances": ["a"], "max_new_tokens": 999},
                AUTH)[0] == 413
