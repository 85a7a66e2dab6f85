"""The server as Ray Serve replicas: the real ``openai`` client against two replicas, with the
API key, and Serve's options passed through (and wrong ones refused)."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import eval_file

pytest.importorskip("ray", reason="Ray is the ray extra: pip install '.[ray]'")
openai = pytest.importorskip("openai", reason="the openai client is in the test extra")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

API_KEY = "ray-test-key-81c2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec(replicas, options=None, port: int = 0):
    from runtime.cluster import ClusterServe, Resources
    from runtime.config.settings import Settings

    settings = Settings(model="tiny.en", server={"port": port, "api_key": API_KEY})
    return ClusterServe(settings, Resources(cpus=0.5), replicas, options or {})


def test_deployment_options_pass_through_and_refuse_unknown_ones():
    from runtime.errors import RuntimeInputError
    from scaleout.ray_serve import MAX_ONGOING_REQUESTS, deployment_options

    options = deployment_options(_spec(2, {"max_queued_requests": 32}))
    assert options["num_replicas"] == 2
    assert options["max_ongoing_requests"] == MAX_ONGOING_REQUESTS
    assert options["max_queued_requests"] == 32
    assert options["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0}
    scaling = deployment_options(_spec(None, {"autoscaling_config": {"max_replicas": 4}}))
    assert scaling["num_replicas"] == "auto"
    with pytest.raises(RuntimeInputError, match="max_ongoing_request: not a Ray Serve"):
        deployment_options(_spec(2, {"max_ongoing_request": 3}))


@pytest.fixture(scope="module")
def replicas(ray_instance):
    from ray import serve

    from scaleout.ray_serve import APP_NAME, start

    port = _free_port()
    start(_spec(2, port=port), log_level="warning")
    yield f"http://127.0.0.1:{port}"
    serve.delete(APP_NAME)
    serve.shutdown()


def test_openai_client_against_two_replicas(replicas):
    from ray import serve

    from scaleout.ray_serve import APP_NAME

    status = serve.status().applications[APP_NAME]
    (deployment,) = status.deployments.values()
    assert deployment.replica_states.get("RUNNING") == 2

    client = openai.OpenAI(api_key=API_KEY, base_url=replicas + "/v1", max_retries=0, timeout=120)
    jfk = eval_file("jfk.flac").read_bytes()

    def ask(_):
        return client.audio.transcriptions.create(model="whisper-1", file=("jfk.flac", jfk))

    with ThreadPoolExecutor(6) as pool:
        texts = [r.text.lower() for r in pool.map(ask, range(6))]
    assert all("ask not what your country can do for you" in t for t in texts), texts
    assert [m.id for m in client.models.list()][0] == "whisper-1"

    stranger = openai.OpenAI(api_key="wrong", base_url=replicas + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.audio.transcriptions.create(model="whisper-1", file=("jfk.flac", jfk))
