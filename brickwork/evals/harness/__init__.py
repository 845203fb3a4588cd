"""harness: the bundled tasks under lm-evaluation-harness — base vs routed vs oracle bricks.

Brickwork as an lm-eval model (`model.BrickworkLM`, registered as ``brickwork``), the bundled
tasks as lm-eval tasks (`tasks`), and the ``brickwork eval harness`` suite (`suite`) that runs
them in three configurations and writes one table (JSON + Markdown + PNG).

lm-eval 0.4.13 has no entry-point discovery for models: a model is known once the module that
registers it is imported. So ``--model brickwork`` works with

- ``python -m brickwork.evals.harness ARGS`` (lm-eval's own command line, model registered), and
- the plain ``lm_eval`` command when `--tasks` names Brickwork's task YAML files (or their
  directory): lm-eval imports their ``process_docs`` hook, which registers the model, before it
  builds the model.

    brickwork eval harness [--tasks sentiment_binary,sms_spam] [--configs base,routed,oracle] [--limit 40]
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from brickwork.evals.harness.suite import add_arguments as add

    add(p)


def main(args: argparse.Namespace) -> int:
    from brickwork.evals.harness.suite import main as run

    return run(args)
