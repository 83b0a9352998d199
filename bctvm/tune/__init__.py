"""Tuning of schedule knobs with MetaSchedule, measured on boards (docs/tuning.md).

    tasks = extract_tasks("block_resnet18", board="zcu102", input_shape=(1, 3, 224, 224))
    results = tune_tasks(tasks, LocalBoards(tasks[0].cfg), "tune/r18", trials=64)
    compile_model(..., tuning_log="tune/r18")     # the best record per task
"""

from .boards import Boards, LocalBoards, RpcBoards, TrackerBoards
from .log import TuningLog, TuningLogWarning
from .tasks import Task, extract_tasks, task_of
from .tune import STRATEGIES, TaskResult, summary, tune_task, tune_tasks

__all__ = ["Boards", "LocalBoards", "RpcBoards", "TrackerBoards", "TuningLog",
           "TuningLogWarning", "Task", "extract_tasks", "task_of", "STRATEGIES", "TaskResult",
           "summary", "tune_task", "tune_tasks"]
