// The package's ES module entry: the same exports as the CommonJS entry (loader.cjs).
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const binding = require('./loader.cjs')

export const {
  HealthChecker,
  LocalProcessRunner,
  LocalProjectSource,
  LogCollectorImpl,
  PortAllocator,
  ProcessManager,
  ProjectBuilder,
  RingBuffer,
  SpawnedProcess,
  SubdomainGenerator,
  cleanupResourceMonitor,
  createBuildLogStream,
  createFilteredLogStream,
  createMultiLogStream,
  detectPackageManager,
  formatLogLine,
  getBuildArgs,
  getInstallArgs,
  getProcessResourceUsage,
  hasBuildScript,
  runCommand,
  spawnCommand,
} = binding
export default binding
