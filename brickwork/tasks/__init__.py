"""Task data: the bundled tasks and their scoring, the phrasings that ask for them, and the
composite-instruction generator built from both.

- `brickwork.tasks.bundled` — the tasks under ``brickwork/data/tasks``, SmolLM2's prompt, scoring;
  its names are re-exported here (``from brickwork.tasks import load_tasks, is_correct``);
- `brickwork.tasks.phrasings` — hand-written ways to ask for each task (``brickwork/data/phrasings.json``);
- `brickwork.tasks.synth` — composite instructions with gold plans (planner training, plan/compose evals).

Everything above this layer (bricks, planners, evals) imports task data from here.
"""

from brickwork.tasks.bundled import (
    CHATML_STOP,
    STOP,
    SYSTEM_PROMPT,
    TASKS_DIR,
    Example,
    Split,
    Task,
    chatml,
    is_correct,
    load_task_file,
    load_tasks,
    normalize,
    render_prompt,
    sample,
)

__all__ = [
    "CHATML_STOP",
    "STOP",
    "SYSTEM_PROMPT",
    "TASKS_DIR",
    "Example",
    "Split",
    "Task",
    "chatml",
    "is_correct",
    "load_task_file",
    "load_tasks",
    "normalize",
    "render_prompt",
    "sample",
]
