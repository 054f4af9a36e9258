// Imported first by bench/run.mjs: the runner's diagnostics default to warnings, and the
// benchmarks crash servers on purpose, so only errors are shown unless the caller chose a level.
process.env.MASTRA_RUNNER_LOG ??= 'error'
