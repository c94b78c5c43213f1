"""Train LeNet-5 on MNIST from Python: the same run as `convlab train --model lenet5 --dataset mnist`.

    python scripts/examples/train_lenet_mnist.py [--epochs N] [--out DIR]

Builds the run from a TrainConfig (everything left out comes from the LeNet-5/MNIST recipe), prints
each epoch's test accuracy from the "epoch" event, then evaluates the saved checkpoint. The run
folder gets config.json, last.h5, metrics.jsonl / metrics.csv and final.json.
"""

import argparse

from convlab.train import TrainConfig, load_checkpoint, make_trainer, metrics
from convlab.train.trainer import predict


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--out", default="runs/lenet5-mnist-example")
    args = parser.parse_args()

    trainer = make_trainer(TrainConfig(model="lenet5", dataset="mnist", epochs=args.epochs, out_dir=args.out))
    trainer.on("epoch", lambda e: print(f"epoch {e['epoch']}: test accuracy {100 * e['test_accuracy']:.2f}% "
                                        f"({e['seconds']:.0f}s, {e['images_per_sec']:.0f} images/s)"))
    outcome = trainer.run()
    print(f"{outcome['reason']}; checkpoint {outcome['checkpoint']['path']}")

    model, info = load_checkpoint(outcome["checkpoint"]["path"])
    logits, labels = predict(model, trainer.test_loader)
    print(f"reloaded {info['model_name']} (epoch {info['epoch']}): "
          f"test accuracy {100 * metrics.accuracy(logits, labels):.2f}%")


if __name__ == "__main__":
    main()
