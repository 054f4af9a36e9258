// Compiled with `tsc --noEmit --strict` by types.spec.ts: MastraAdmin-shaped code must type-check
// against the published index.d.ts, and misuse must not.
import {
  LocalProcessRunner,
  LocalProjectSource,
  ProjectBuilder,
  detectPackageManager,
  getInstallArgs,
  type ProjectBuildResult,
  type ProjectBuilderOptions,
  type Build,
  type BuildOptions,
  type Deployment,
  type EdgeRouterProvider,
  type LocalProcessRunnerConfig,
  type PaginatedLogsResult,
  type Project,
  type ProjectSource,
  type ProjectSourceProvider,
  type ResolvedRunnerConfig,
  type RouteConfig,
  type RouteInfo,
  type RunOptions,
  type RunnerStats,
  type RunningServer,
} from '../../index'

const config: LocalProcessRunnerConfig = {
  portRange: { start: 4111, end: 4200 },
  maxConcurrentBuilds: 3,
  defaultBuildTimeoutMs: 600_000,
  healthCheck: { timeoutMs: 5000, retryIntervalMs: 1000, maxRetries: 30, endpoint: '/health' },
  logRetentionLines: 10_000,
  buildDir: '.mastra/builds',
  globalEnvVars: { MASTRA_TELEMETRY_DISABLED: '1' },
  shutdownTimeoutMs: 10_000,
  restartPolicy: { maxRestarts: 5, backoffMs: 1000, maxBackoffMs: 30_000 },
  defaultSource: 'local',
}
const withBase: LocalProcessRunnerConfig = { buildBaseDir: '/var/mastra' }

const runner = new LocalProcessRunner(config)
const bare = new LocalProcessRunner()
const kind: 'local' = runner.type
const stats: RunnerStats = bare.getStats()
const ports: number[] = stats.allocatedPorts
const resolved: ResolvedRunnerConfig = runner.getConfig()
const done: Promise<void> = runner.shutdown()

const now = new Date()
const project: Project = {
  id: 'p1',
  teamId: 't1',
  name: 'Hello',
  slug: 'hello',
  sourceType: 'local',
  sourceConfig: { path: '/projects/hello' },
  defaultBranch: 'main',
  envVars: [{ key: 'A', encryptedValue: 'x', isSecret: false, createdAt: now, updatedAt: now }],
  createdAt: now,
  updatedAt: now,
}
const deployment: Deployment = {
  id: 'd1',
  projectId: 'p1',
  type: 'preview',
  branch: 'feature/x',
  slug: 'feature-x--hello',
  status: 'pending',
  currentBuildId: null,
  publicUrl: null,
  internalHost: null,
  envVarOverrides: [],
  autoShutdown: false,
  expiresAt: null,
  createdAt: now,
  updatedAt: now,
}
const build: Build = {
  id: 'b1',
  deploymentId: 'd1',
  trigger: 'manual',
  triggeredBy: 'user-1',
  commitSha: 'abc123',
  commitMessage: null,
  status: 'queued',
  logs: '',
  queuedAt: now,
  startedAt: null,
  completedAt: null,
  errorMessage: null,
}
const server: RunningServer = {
  id: 's1',
  deploymentId: 'd1',
  buildId: 'b1',
  processId: 1234,
  containerId: null,
  host: '127.0.0.1',
  port: 4111,
  healthStatus: 'healthy',
  lastHealthCheck: now,
  memoryUsageMb: null,
  cpuPercent: null,
  startedAt: now,
  stoppedAt: null,
}
const buildOptions: BuildOptions = { envVars: { A: '1' }, timeoutMs: 1000, skipInstall: false }
const runOptions: RunOptions = { envVars: { B: '2' }, port: 4150, healthCheckTimeoutMs: 30_000 }
const source: ProjectSource = { id: 'p1', name: 'Hello', type: 'local', path: '/projects/hello' }
const provider: ProjectSourceProvider = {
  type: 'local',
  async getProjectPath(src: ProjectSource, targetDir: string) {
    return `${targetDir}/${src.id}`
  },
}
const localSource: ProjectSourceProvider = new LocalProjectSource({ basePaths: ['/projects'], exclude: ['coverage'] })
const copied: Promise<string> = localSource.getProjectPath(source, '/builds/b1')
const listed: Promise<ProjectSource[]> = new LocalProjectSource({ basePaths: ['/projects'] }).listProjects('t1')
const route: RouteConfig = { deploymentId: 'd1', projectId: 'p1', subdomain: 'hello', targetHost: '127.0.0.1', targetPort: 4111 }
const routeInfo: RouteInfo = { routeId: 'r1', deploymentId: 'd1', publicUrl: 'http://hello.localhost', status: 'active', createdAt: now }
const router: EdgeRouterProvider = {
  type: 'memory',
  async registerRoute(cfg: RouteConfig) {
    return { ...routeInfo, deploymentId: cfg.deploymentId }
  },
  async removeRoute() {},
  async getRoute() {
    return null
  },
}
const page: PaginatedLogsResult = {
  entries: [{ id: '1', timestamp: now.toISOString(), line: 'hello', stream: 'stderr' }],
  hasMore: false,
  oldestCursor: '1',
  newestCursor: '1',
}

const builderOptions: ProjectBuilderOptions = { buildDir: '/b', maxConcurrentBuilds: 2, defaultTimeoutMs: 1000, globalEnvVars: {} }
const builder = new ProjectBuilder(builderOptions)
const built: Promise<Build> = builder.build(project, build, '/w', buildOptions, (line: string) => line.length)
const builtById: Promise<ProjectBuildResult> = builder.buildById('b1', '/w', buildOptions, (line: string) => line.length)
const cancelled: Promise<void> = builder.cancel('b1')
const pm: Promise<'npm' | 'pnpm' | 'yarn' | 'bun'> = detectPackageManager('/w')
const frozenArgs: string[] = getInstallArgs('pnpm', { frozen: true })

// Misuse the declarations must reject (each line fails to compile without its directive).
// @ts-expect-error portRange is an object, not a string
new LocalProcessRunner({ portRange: '4000-4100' })
// @ts-expect-error defaultSource only accepts 'local'
new LocalProcessRunner({ defaultSource: 'github' })
// @ts-expect-error type is the literal 'local'
const wrongKind: 'docker' = runner.type
// @ts-expect-error basePaths is required
new LocalProjectSource({ exclude: ['x'] })
// @ts-expect-error a build's status is one of the listed states
const badBuild: Build = { ...build, status: 'done' }
// @ts-expect-error only the four package managers are accepted
getInstallArgs('pip')

export {
  withBase, kind, ports, resolved, done, project, deployment, build, server, buildOptions, runOptions,
  source, provider, localSource, copied, listed, route, router, page, wrongKind, badBuild, built,
  cancelled, frozenArgs, builtById, pm,
}
