"""Command line: `python -m keras_spiking_conv demo [options]`."""

import argparse
import json
import logging
import os
import sys


class _NoRetracingWarning(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning.

    The demo builds and runs about twenty models per seed by design: each gets its
    own predict function, which TensorFlow counts as retracing and warns about.
    """

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


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
        "--regularized-epochs",
        type=int,
        default=10,
        help="regularized training, of the ReLU and of the LIF network (default: 10)",
    )
    demo.add_argument(
        "--quantized-epochs",
        type=int,
        default=2,
        help="quantization-aware fine-tuning for the low-latency row (default: 2)",
    )
    demo.add_argument(
        "--data",
        choices=("auto", "keras", "bundled"),
        default="auto",
        help="MNIST source: keras.datasets with bundled fallback (auto), or only one",
    )
    demo.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        help="one or more seeds (default: 0); with several, the workflow runs once per seed "
        "and a table of means and ranges follows the per-seed tables",
    )
    demo.add_argument(
        "--json",
        metavar="PATH",
        help="also write the results as JSON: the list of rows for one seed; with several, "
        '{"runs": {seed: rows}, "summary": [...]}',
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    for name in ("train_images", "test_images", "epochs", "regularized_epochs", "quantized_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if len(set(args.seed)) != len(args.seed):
        parser.error(f"--seed values must differ, got {args.seed}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").addFilter(_NoRetracingWarning())
    import keras

    from keras_spiking_conv.demo import format_summary, format_table, run_workflow, summarize

    runs = {}
    for seed in args.seed:
        # Each seed starts from a fresh Keras session, as a run of its own would.
        keras.utils.clear_session()
        if len(args.seed) > 1 and not args.quiet:
            print(f"\nRunning seed {seed}")
        runs[seed] = run_workflow(
            n_train=args.train_images,
            n_test=args.test_images,
            epochs=args.epochs,
            regularized_epochs=args.regularized_epochs,
            quantized_epochs=args.quantized_epochs,
            source=args.data,
            seed=seed,
            verbose=0 if args.quiet else 1,
        )
        print(f"\nSeed {seed}:\n" if len(args.seed) > 1 else "")
        print(format_table(runs[seed]))
    if len(runs) > 1:
        summary = summarize(list(runs.values()))
        print(f"\nOver seeds {', '.join(map(str, runs))}:\n")
        print(format_summary(summary, len(runs)))
        document = {"runs": {str(seed): results for seed, results in runs.items()}}
        document["summary"] = summary
    else:
        document = next(iter(runs.values()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(document, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
