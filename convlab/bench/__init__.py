"""Benchmarks that print tables of convlab against PyTorch, measured in one process.

`convlab bench [layers]` runs the model benchmark (training and inference throughput and peak
memory of LeNet-5, ResNet-20 and a VGG-BN net) and then the single-layer one; `convlab bench
layers` runs only the latter. Extra arguments go to the model benchmark.
"""


def main(argv=None) -> int:
    from . import layers, models

    argv = list(argv or [])
    if argv[:1] == ["layers"]:
        layers.main(argv[1:])
        return 0
    models.main(argv)
    print()
    layers.main([])
    return 0
