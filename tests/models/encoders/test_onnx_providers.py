"""Which ONNX Runtime execution providers the encoder asks for: CPU unless the process was given a GPU and the CUDA
build is installed (Ray GPU actors; no GPU here, so the choice is tested on a stand-in for onnxruntime)."""
from __future__ import annotations

import pytest

from voce.models.encoders.onnx_backend import execution_providers


class _Ort:
    def __init__(self, providers: list[str]) -> None:
        self._providers = providers

    def get_available_providers(self) -> list[str]:
        return self._providers


@pytest.mark.parametrize(
    ("visible", "available", "expected"),
    [
        (None, ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),  # no GPU given
        ("", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),  # Ray: num_gpus=0
        ("-1", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
        ("0", ["CPUExecutionProvider"], ["CPUExecutionProvider"]),  # a GPU but the CPU build of onnxruntime
        ("0", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    ],
)
def test_cuda_only_with_a_gpu_and_the_cuda_build(
    visible: str | None, available: list[str], expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert execution_providers(_Ort(available)) == expected
