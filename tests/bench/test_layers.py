"""scripts/bench_layers runs every row it promises and prints a time ratio for each."""

import pytest

from convlab import parallel

ROWS = ["conv 3x3 64->64 pad 1", "conv 3x3 64->64 stride 2", "conv 1x1 64->64", "depthwise 3x3 (groups 64)",
        "max pool 2x2 on 6x28x28", "max pool 2x2 on 64x32x32"]


@pytest.fixture
def restore_threads():
    threads = parallel.num_threads()
    yield
    parallel.set_num_threads(threads)


def test_the_layer_table_has_a_ratio_for_every_layer(capsys, monkeypatch, restore_threads):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # main() sets it when unset; put it back afterwards
    threads = torch.get_num_threads()
    from convlab.bench import layers

    try:
        layers.main(["--batch", "2", "--rounds", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    for label in ROWS:
        row = [line for line in lines if line.startswith(label)]
        assert len(row) == 1, (label, lines)
        convlab_ms, torch_ms, ratio = (float(v) for v in row[0][len(label):].split())
        assert convlab_ms > 0 and torch_ms > 0 and ratio > 0  # (ms are rounded: no exact quotient)
