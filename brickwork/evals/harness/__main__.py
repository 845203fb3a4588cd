"""``python -m brickwork.evals.harness ARGS``: lm-eval's own command line, with ``--model brickwork``
registered first (lm-eval 0.4.13 finds no models outside its package by itself).

    python -m brickwork.evals.harness --model brickwork --model_args library=~/.brickwork,bricks=routed \\
        --include_path "$(python -m brickwork.evals.harness.tasks)" --tasks brickwork_mc --apply_chat_template
"""

from __future__ import annotations


def main() -> None:
    import brickwork.evals.harness.model  # noqa: F401  (registers "brickwork")
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
