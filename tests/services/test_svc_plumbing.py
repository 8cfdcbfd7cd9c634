"""services_common: health before and after loading, graceful stop, tensors, error mapping."""

from __future__ import annotations

import logging

import grpc
import numpy as np
import pytest
import torch

from diffsem.errors import CheckpointError, ConfigError
from protos.diffsem.v1 import common_pb2, receiver_pb2, receiver_pb2_grpc
from receiver.server import ReceiverServicer
from services_common.client import grpc_channel, health_status
from services_common.errors import BadRequest, NotReady, OutOfRange, status_for
from services_common.server import ServiceHost
from services_common.tensors import to_numpy, to_proto, to_torch

RECEIVER = receiver_pb2.DESCRIPTOR.services_by_name["Receiver"].full_name


def test_health_is_not_serving_until_loaded_and_rpcs_say_unavailable() -> None:
    host = ServiceHost([RECEIVER])
    host.add(receiver_pb2_grpc.add_ReceiverServicer_to_server, ReceiverServicer())  # no model yet
    port = host.start()
    address = f"127.0.0.1:{port}"
    try:
        assert health_status(address) == "NOT_SERVING"
        assert health_status(address, RECEIVER) == "NOT_SERVING"
        with grpc_channel(address) as ch:
            with pytest.raises(grpc.RpcError) as err:
                receiver_pb2_grpc.ReceiverStub(ch).Info(common_pb2.InfoRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "loading" in err.value.details()
        host.set_serving(True)
        assert health_status(address) == health_status(address, RECEIVER) == "SERVING"
        assert health_status(address, "diffsem.v1.Nope") == "UNREACHABLE"  # NOT_FOUND for unknown names
    finally:
        host.stop(0.5)
    assert health_status(address) == "UNREACHABLE"


@pytest.mark.parametrize("value", [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64),
                                   np.zeros((1, 28, 28), np.uint8), torch.ones(4, dtype=torch.float16),
                                   np.array([True, False])])
def test_tensor_round_trip(value: np.ndarray | torch.Tensor) -> None:
    msg = to_proto(value)
    back = to_numpy(msg)
    want = value.numpy() if isinstance(value, torch.Tensor) else value
    assert back.dtype == want.dtype and back.shape == want.shape and np.array_equal(back, want)
    assert torch.equal(to_torch(msg), torch.as_tensor(want))


def test_tensor_checks_name_what_is_wrong() -> None:
    msg = to_proto(np.zeros((2, 3), np.float32))
    with pytest.raises(BadRequest, match=r"symbols: shape \(2, 3\), expected \(\*, 4\)"):
        to_numpy(msg, "symbols", shape=(None, 4))
    with pytest.raises(BadRequest, match="dtype float32, expected int64"):
        to_numpy(msg, dtypes=(common_pb2.DTYPE_INT64,))
    with pytest.raises(BadRequest, match="24 bytes do not match shape"):
        to_numpy(common_pb2.Tensor(data=msg.data, shape=[5], dtype=common_pb2.DTYPE_FLOAT32))
    with pytest.raises(BadRequest, match="not supported"):
        to_numpy(common_pb2.Tensor(data=b"", shape=[0], dtype=99))
    with pytest.raises(BadRequest, match="cannot send dtype complex"):
        to_proto(np.zeros(2, complex))


def test_error_mapping() -> None:
    assert status_for(OutOfRange("t_star=9999"))[0] == grpc.StatusCode.OUT_OF_RANGE
    assert status_for(BadRequest("bad"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(ConfigError("k odd"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(CheckpointError("gone"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(NotReady("loading"))[0] == grpc.StatusCode.UNAVAILABLE
    code, msg = status_for(RuntimeError("boom"))
    assert code == grpc.StatusCode.INTERNAL and "boom" in msg


def test_a_service_without_a_key_warns_that_authentication_is_off(caplog: pytest.LogCaptureFixture) -> None:
    from services_common import auth

    with caplog.at_level("WARNING"):
        verifier = auth.verifier_from(None, None, auth.TRANSMITTER_AUDIENCE, logging.getLogger("svc"))
    assert not verifier.enabled and "AUTHENTICATION IS OFF" in caplog.text


def test_a_settings_spec_makes_the_parser_the_argv_and_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from channel_emulator.settings import SPEC

    argv = SPEC.argv(snr_db=3.5, trace=["eve=a.csv"], port=0)
    assert argv == ["--snr-db", "3.5", "--trace", "eve=a.csv", "--port", "0"]
    args = SPEC.parse(argv)
    # the default seed is none: each link's noise from the OS (issue 19)
    assert (args.snr_db, args.trace, args.port, args.seed) == (3.5, ["eve=a.csv"], 0, None)
    monkeypatch.setenv("DIFFSEM_SEED", "7")
    assert SPEC.parse([]).seed == 7 and "DIFFSEM_MAX_LINKS" in SPEC.environment()
    with pytest.raises(KeyError, match="no option 'snr'"):
        SPEC.argv(snr=1)


@pytest.mark.parametrize("env,words", [
    ({"DIFFSEM_T_STAR": "abc"}, "$DIFFSEM_T_STAR gives 'abc', which --t-star cannot read"),
    ({"DIFFSEM_SELF_NOISE": "loud"}, "$DIFFSEM_SELF_NOISE gives 'loud'; --self-noise takes random, keyed"),
    ({"DIFFSEM_SCENARIO": "nope"}, "unknown scenario 'nope'; use one of equal-snr, snr-advantage, keyed, antennas"),
])
def test_a_bad_environment_value_is_one_line_and_exit_status_2(env: dict[str, str], words: str,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from transmitter.settings import SPEC

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as done:
        SPEC.parse([])
    assert done.value.code == 2 and words in capsys.readouterr().err


def test_a_scenario_sets_defaults_under_the_environment_and_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from transmitter.settings import SPEC

    monkeypatch.setenv("DIFFSEM_SCENARIO", "keyed")
    assert (SPEC.parse([]).t_star, SPEC.parse([]).self_noise) == (700, "keyed")
    monkeypatch.setenv("DIFFSEM_T_STAR", "500")
    assert SPEC.parse([]).t_star == 500 and SPEC.parse(["--t-star", "100"]).t_star == 100
    monkeypatch.setenv("DIFFSEM_T_STAR", "")  # empty, as compose writes an unset value: the preset's
    assert SPEC.parse([]).t_star == 700


def test_a_white_box_eavesdropper_needs_the_option_that_says_it_reads_the_transmitter_weights() -> None:
    from launcher.__main__ import check_eavesdroppers, parse_args

    problem = check_eavesdroppers(parse_args(["-e", "wb:whitebox-inversion:0"]))
    assert problem is not None and "--eavesdropper-reads-transmitter-weights wb" in problem
    assert check_eavesdroppers(parse_args(["-e", "wb:whitebox-inversion:0",
                                           "--eavesdropper-reads-transmitter-weights", "wb"])) is None
    assert "names no eavesdropper" in check_eavesdroppers(parse_args(
        ["-e", "eve", "--eavesdropper-reads-transmitter-weights", "wb"]))
    assert check_eavesdroppers(parse_args(["-e", "eve:feature-classifier:0"])) is None  # black-box: nothing needed
