"""Run: one config trained, evaluated and profiled into its run folder (the runner, the training
loop and step, checkpoints, evaluation, processes and threads, what a run needs before it starts)."""
