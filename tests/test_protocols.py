"""Standard request shapes on one running `mtbranch serve`: the Open Inference Protocol v2 through Triton's own client
(tritonclient[http]), TEI's /predict and vLLM's /classify against their published schemas; each equal to `predict`,
each error in its protocol's shape, all through the one batcher."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as tritonhttp  # tritonclient[http], in the dev extra
from pydantic import BaseModel, ConfigDict

from mtbranch.composition.artifact import load
from mtbranch.serve import protocols
from mtbranch.serve.app import ServeSettings, create_app
from mtbranch.serve.schema import Limits, RequestError

from helpers import Server, make_serving_artifact, results_close

TEXTS = ["the movie was very good !", "bad", "john visited paris and london .", "a terrible , boring film"]
PAIRS = ["a great film", "terrible acting", "mary works at google", "good"]


@pytest.fixture(scope="module")
def model(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load(make_serving_artifact(tiny_bert_dir, tmp_path_factory.mktemp("protocols")))


@pytest.fixture(scope="module")
def server(model: Any) -> Iterator[Server]:
    settings = ServeSettings(max_batch_wait_ms=50, limits=Limits(max_body_bytes=4000, max_texts=20, max_chars=300))
    with Server(create_app(model, settings=settings)) as s:
        yield s


@pytest.fixture(scope="module")
def triton(server: Server) -> Any:
    return tritonhttp.InferenceServerClient(url=f"127.0.0.1:{server.port}")


# -- Open Inference Protocol v2, through tritonclient ---------------------------------------------------------------
def _text_input(name: str, texts: list[str], binary: bool) -> Any:
    t = tritonhttp.InferInput(name, [len(texts)], "BYTES")
    t.set_data_from_numpy(np.array([s.encode() for s in texts], dtype=np.object_), binary_data=binary)
    return t


def _decoded(result: Any, task: str) -> list[Any]:
    """A task's output tensor: one JSON document per text (str in JSON, bytes in binary answers)."""
    return [json.loads(v) for v in result.as_numpy(task).tolist()]


def test_v2_health_and_metadata_with_tritonclient(triton: Any, model: Any) -> None:
    assert triton.is_server_live() and triton.is_server_ready() and triton.is_model_ready("mtbranch")
    meta = triton.get_model_metadata("mtbranch")
    assert meta["name"] == "mtbranch" and meta["platform"] == "mtbranch"
    assert [t["name"] for t in meta["inputs"]] == ["text", "text_pair"]
    assert [t["name"] for t in meta["outputs"]] == model.task_names
    assert all(t["datatype"] == "BYTES" and t["shape"] == [-1] for t in meta["inputs"] + meta["outputs"])
    assert triton.get_server_metadata()["extensions"] == ["binary_tensor_data"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_v2_infer_with_tritonclient_equals_predict(triton: Any, model: Any, binary: bool) -> None:
    # no requested outputs: tritonclient asks for binary outputs, and every single-text task answers
    result = triton.infer("mtbranch", [_text_input("text", TEXTS, binary)])
    single = [b.name for b in model.branches if b.manifest.tokenizer.input_signature == "single"]
    assert {o["name"] for o in result.get_response()["outputs"]} == set(single)
    want = model.predict(TEXTS, tasks=single)
    for task in single:
        assert results_close(_decoded(result, task), [w[task] for w in want])
    # requested outputs choose the tasks (a pair task with its second input)
    outputs = [tritonhttp.InferRequestedOutput("similarity", binary_data=binary),
               tritonhttp.InferRequestedOutput("sentiment", binary_data=binary)]
    result = triton.infer("mtbranch", [_text_input("text", TEXTS, binary), _text_input("text_pair", PAIRS, binary)],
                          outputs=outputs, request_id="r1")
    assert [o["name"] for o in result.get_response()["outputs"]] == ["similarity", "sentiment"]
    assert result.get_response()["id"] == "r1"
    want = model.predict(TEXTS, text_pairs=PAIRS, tasks=["similarity", "sentiment"])
    for task in ("similarity", "sentiment"):
        assert results_close(_decoded(result, task), [w[task] for w in want])


def test_v2_errors_in_the_protocols_shape(triton: Any, server: Server) -> None:
    from tritonclient.utils import InferenceServerException

    cases = [("nope", [_text_input("text", TEXTS[:1], True)], None, "404", "unknown model"),
             ("mtbranch", [_text_input("text", TEXTS[:1], True)], [tritonhttp.InferRequestedOutput("nope")], "400",
              "unknown output"),
             ("mtbranch", [_text_input("words", TEXTS[:1], False)], None, "400", "unknown input"),
             ("mtbranch", [_text_input("text", TEXTS[:1], False)], [tritonhttp.InferRequestedOutput("similarity")],
              "400", "input 'text_pair' is missing")]
    for name, inputs, outputs, status, needle in cases:
        with pytest.raises(InferenceServerException) as err:
            triton.infer(name, inputs, outputs=outputs)
        assert err.value.status() == status and needle in err.value.message(), (needle, err.value)
    r = httpx.post(server.url + "/v2/models/mtbranch/infer", content=b"{not json")
    assert r.status_code == 400 and set(r.json()) == {"error"}
    r = httpx.post(server.url + "/v2/models/mtbranch/infer", json={"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [3], "data": ["a", "b"]}]})
    assert r.status_code == 400 and "shape [3]" in r.json()["error"]


# -- TEI's /predict (inputs) beside the native /predict (texts) ---------------------------------------------------
class TeiPrediction(BaseModel):  # TEI's published schema (router/src/http/types.rs: Prediction)
    model_config = ConfigDict(extra="forbid")
    score: float
    label: str


def _ranked(scores: dict[str, float]) -> list[dict[str, Any]]:
    return [{"score": v, "label": k} for k, v in sorted(scores.items(), key=lambda kv: kv[1], reverse=True)]


def test_tei_predict_on_the_native_route_equals_predict(server: Server, model: Any) -> None:
    want = model.predict(TEXTS, tasks=["sentiment"])
    batch = httpx.post(server.url + "/predict", json={"inputs": [[t] for t in TEXTS], "truncate": True})
    assert batch.status_code == 200, batch.text
    assert [[TeiPrediction.model_validate(p) for p in ps] for ps in batch.json()]
    assert results_close(batch.json(), [_ranked(w["sentiment"]["scores"]) for w in want])
    one = httpx.post(server.url + "/predict", json={"inputs": TEXTS[0], "raw_scores": True})
    raw = model.predict(TEXTS[:1], tasks=["sentiment"], raw=True)[0]["sentiment"]
    assert results_close(one.json(), _ranked(dict(zip(raw["scores"], raw["raw"], strict=True))))
    lone = httpx.post(server.url + "/predict", content=b'{"inputs": "bad \\ud800 film"}')  # valid JSON, no UTF-8 form
    assert lone.status_code == 200 and {p["label"] for p in lone.json()} == {"positive", "negative"}, lone.text
    native = httpx.post(server.url + "/predict", json={"texts": ["inputs"], "tasks": ["sentiment"]})
    assert native.json()["tasks"] == ["sentiment"]  # a native body mentioning "inputs" stays native


def test_tei_with_huggingface_hubs_inference_client(server: Server, model: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub's InferenceClient (how TEI's docs call it) posts TEI's body to the URL it is given: the
    server's root (the default classify task) or a task's prefix."""
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the tests' isolation sets it; this is loopback

    want = model.predict(TEXTS[:1], tasks=["sentiment"])[0]["sentiment"]
    for url in (server.url, server.url + "/tei/sentiment"):
        top = InferenceClient(model=url).text_classification(TEXTS[0])
        assert top.label == want["label"] and abs(top.score - want["score"]) < 1e-5, (url, top)


def test_tei_pair_task_under_its_prefix(server: Server, model: Any) -> None:
    want = model.predict(TEXTS[:2], text_pairs=PAIRS[:2], tasks=["similarity"])
    for path in ("/tei/similarity/predict", "/tei/similarity"):
        r = httpx.post(server.url + path, json={"inputs": [[t, p] for t, p in zip(TEXTS[:2], PAIRS[:2], strict=True)]})
        assert r.status_code == 200, r.text
        assert results_close(r.json(), [[{"score": w["similarity"]["value"], "label": "score"}] for w in want])


@pytest.mark.parametrize(("path", "body", "status", "kind", "needle"), [
    ("/predict", {"inputs": []}, 400, "Empty", "inputs is empty"),
    ("/predict", {"inputs": ["a", "b", "c"]}, 422, "Validation", "3 strings"),
    ("/predict", {"inputs": [["a", "b"]]}, 422, "Validation", "takes one text"),
    ("/tei/entities/predict", {"inputs": "a"}, 400, "Validation", "token_classification"),
    ("/tei/nope/predict", {"inputs": "a"}, 404, "Validation", "not a task"),
    ("/tei/similarity/predict", {"inputs": "a"}, 422, "Validation", "takes a pair"),
])
def test_tei_errors_in_teis_shape(server: Server, path: str, body: dict[str, Any], status: int, kind: str,
                                  needle: str) -> None:
    r = httpx.post(server.url + path, json=body)
    assert r.status_code == status and set(r.json()) == {"error", "error_type"}, r.text
    assert r.json()["error_type"] == kind and needle in r.json()["error"], r.text


# -- vLLM's /classify -------------------------------------------------------------------------------------------
class VllmData(BaseModel):  # vLLM's published schema (entrypoints/pooling/classify/protocol.py)
    model_config = ConfigDict(extra="forbid")
    index: int
    label: str | None
    probs: list[float]
    num_classes: int


class VllmResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    object: str
    created: int
    model: str
    data: list[VllmData]
    usage: dict[str, Any]


def test_vllm_classify_equals_predict(server: Server, model: Any) -> None:
    want = model.predict(TEXTS, tasks=["sentiment"])
    for body in ({"model": "sentiment", "input": TEXTS}, {"model": "mtbranch", "input": TEXTS}, {"input": TEXTS}):
        r = httpx.post(server.url + "/classify", json=body)
        assert r.status_code == 200, r.text
        resp = VllmResponse.model_validate(r.json())
        assert resp.model == body.get("model", "mtbranch") and resp.id.startswith("classify-")
        assert [d.index for d in resp.data] == list(range(len(TEXTS)))
        for d, w in zip(resp.data, want, strict=True):
            assert d.label == w["sentiment"]["label"] and d.num_classes == len(w["sentiment"]["scores"])
            assert results_close(d.probs, list(w["sentiment"]["scores"].values()))
        assert resp.usage["prompt_tokens"] == resp.usage["total_tokens"] > len(TEXTS)
    raw = httpx.post(server.url + "/classify", json={"input": TEXTS[0], "use_activation": False}).json()
    assert results_close(raw["data"][0]["probs"], model.predict(TEXTS[:1], tasks=["sentiment"], raw=True)[0][
        "sentiment"]["raw"])


@pytest.mark.parametrize(("body", "status", "kind", "needle"), [
    ({"model": "nope", "input": "a"}, 404, "NotFoundError", "not a task"),
    ({"model": "entities", "input": "a"}, 400, "BadRequestError", "token_classification"),
    ({"messages": [{"role": "user", "content": "a"}]}, 400, "BadRequestError", "chat messages"),
    ({"input": [1, 2, 3]}, 422, "BadRequestError", "input"),
    ({"input": []}, 422, "BadRequestError", "texts is empty"),
])
def test_vllm_errors_in_vllms_shape(server: Server, body: dict[str, Any], status: int, kind: str,
                                    needle: str) -> None:
    r = httpx.post(server.url + "/classify", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == status and err["type"] == kind
    assert needle in err["message"], err


def test_guard_errors_take_the_protocols_shape(server: Server) -> None:
    big = {"input": ["x" * 250] * 20}  # over max_body_bytes: refused by the guard before any route runs
    r = httpx.post(server.url + "/classify", json=big)
    assert r.status_code == 413 and r.json()["error"]["type"] == "BadRequestError", r.text
    r = httpx.post(server.url + "/v2/models/mtbranch/infer", json={"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [20], "data": ["x" * 250] * 20}]})
    assert r.status_code == 413 and set(r.json()) == {"error"}
    assert protocols.error_body("/predict", RequestError(503, "busy", "later")) == {"error": "busy", "hint": "later"}
    assert protocols.path_label("/v2/models/mtbranch/versions/abc/infer") == "/v2/models/{name}/infer"
    assert protocols.admitted("/tei/sentiment") and protocols.admitted("/classify") and protocols.admitted("/")
    assert not protocols.admitted("/v2/health/ready")
    metrics = httpx.get(server.url + "/metrics").text
    assert 'mtbranch_requests_total{code="413",path="/classify"}' in metrics


# -- one batcher for every shape ----------------------------------------------------------------------------------
def test_every_shape_joins_the_same_batches(model: Any) -> None:
    """Four shapes sent at once, within one batch window: one batch, one trunk pass, each answer equal to predict."""
    settings = ServeSettings(max_batch_wait_ms=1500, max_batch_size=64, max_padding=None)  # one pass: no buckets
    with Server(create_app(model, settings=settings)) as s:
        v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [TEXTS[0]]}],
              "outputs": [{"name": "sentiment"}]}
        calls = {"native": ("/predict", {"texts": [TEXTS[1]], "tasks": ["sentiment"]}),
                 "v2": ("/v2/models/mtbranch/infer", v2),
                 "tei": ("/predict", {"inputs": TEXTS[2]}),
                 "vllm": ("/classify", {"input": [TEXTS[3]]})}
        before = s.stats()
        got: dict[str, Any] = {}

        def send(name: str) -> None:
            path, body = calls[name]
            got[name] = httpx.post(s.url + path, json=body, timeout=30)

        threads = [threading.Thread(target=send, args=(name,)) for name in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = s.stats()
        assert all(r.status_code == 200 for r in got.values()), [r.text for r in got.values()]
        assert after["requests"] - before["requests"] == 4
        assert after["batches"] - before["batches"] == 1 and after["predict_calls"] - before["predict_calls"] == 1
        want = [w["sentiment"] for w in model.predict(TEXTS, tasks=["sentiment"])]
        assert results_close(json.loads(got["v2"].json()["outputs"][0]["data"][0]), want[0])
        assert results_close(got["native"].json()["results"][0]["sentiment"], want[1])
        assert results_close(got["tei"].json(), _ranked(want[2]["scores"]))
        assert results_close(got["vllm"].json()["data"][0]["probs"], list(want[3]["scores"].values()))
