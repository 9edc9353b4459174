"""Command line: `python -m keras_spiking_conv demo [options]`."""

import argparse
import json
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="keras-spiking-conv",
        description="keras-spiking-conv: convert Keras networks to spiking networks.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="Run the MNIST workflow (train, convert, tune, regularize) and print the table.",
    )
    demo.add_argument("--train-images", type=int, default=8000, help="default: 8000")
    demo.add_argument("--test-images", type=int, default=400, help="default: 400")
    demo.add_argument("--epochs", type=int, default=2, help="base training epochs (default: 2)")
    demo.add_argument(
        "--regularized-epochs", type=int, default=10, help="regularized training (default: 10)"
    )
    demo.add_argument(
        "--data",
        choices=("auto", "keras", "bundled"),
        default="auto",
        help="MNIST source: keras.datasets with bundled fallback (auto), or only one",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    for name in ("train_images", "test_images", "epochs", "regularized_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from keras_spiking_conv.demo import format_table, run_workflow

    results = run_workflow(
        n_train=args.train_images,
        n_test=args.test_images,
        epochs=args.epochs,
        regularized_epochs=args.regularized_epochs,
        source=args.data,
        seed=args.seed,
        verbose=0 if args.quiet else 1,
    )
    print()
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
