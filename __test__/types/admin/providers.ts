// MastraAdmin's provider interfaces (`@mastra/admin` `runner/base.ts` in its older and newer
// form, `source/base.ts`, `router/base.ts`, `file-storage/base.ts`), declared here from their
// published shape.
import type {
  Build,
  ChangeEvent,
  Deployment,
  EncryptedEnvVar,
  FileInfo,
  Project,
  ProjectSource,
  RouteConfig,
  RouteHealthStatus,
  RouteInfo,
  RunningServer,
} from './entities'

export interface BuildOptions {
  envVars?: Record<string, string>
  timeoutMs?: number
  skipInstall?: boolean
}

export interface RunOptions {
  envVars?: Record<string, string>
  port?: number
  healthCheckTimeoutMs?: number
}

export type LogStreamCallback = (log: string) => void

export interface StructuredLogEntry {
  id: string
  timestamp: string
  line: string
  stream: 'stdout' | 'stderr'
}

export interface PaginatedLogsResult {
  entries: StructuredLogEntry[]
  hasMore: boolean
  oldestCursor: string | null
  newestCursor: string | null
}

export type ServerLogCallback = (serverId: string, line: string, stream: 'stdout' | 'stderr', id?: string | undefined) => void

export interface ProjectSourceProvider {
  readonly type: 'local' | 'github' | string
  listProjects(teamId: string): Promise<ProjectSource[]>
  getProject(projectId: string): Promise<ProjectSource>
  validateAccess(source: ProjectSource): Promise<boolean>
  getProjectPath(source: ProjectSource, targetDir: string): Promise<string>
  watchChanges?(source: ProjectSource, callback: (event: ChangeEvent) => void): () => void
}

export interface EdgeRouterProvider {
  readonly type: 'local' | 'cloudflare' | string
  registerRoute(config: RouteConfig): Promise<RouteInfo>
  updateRoute(routeId: string, config: Partial<RouteConfig>): Promise<RouteInfo>
  removeRoute(routeId: string): Promise<void>
  getRoute(deploymentId: string): Promise<RouteInfo | null>
  listRoutes(projectId: string): Promise<RouteInfo[]>
  checkRouteHealth(routeId: string): Promise<RouteHealthStatus>
}

export interface FileStorageProvider {
  readonly type: 'local' | 's3' | 'gcs' | string
  write(path: string, content: Buffer | string): Promise<void>
  read(path: string): Promise<Buffer>
  list(prefix: string): Promise<FileInfo[]>
  delete(path: string): Promise<void>
  move(from: string, to: string): Promise<void>
  exists(path: string): Promise<boolean>
}

/** The runner interface before MastraAdmin injected its providers. */
export interface ProjectRunnerV1 {
  readonly type: 'local' | 'k8s' | string
  build(project: Project, build: Build, options?: BuildOptions, onLog?: LogStreamCallback): Promise<Build>
  deploy(project: Project, deployment: Deployment, build: Build, options?: RunOptions): Promise<RunningServer>
  stop(server: RunningServer): Promise<void>
  healthCheck(server: RunningServer): Promise<{ healthy: boolean; message?: string }>
  getLogs(server: RunningServer, options?: { tail?: number; since?: Date }): Promise<string>
  streamLogs(server: RunningServer, callback: LogStreamCallback): () => void
  getResourceUsage(server: RunningServer): Promise<{ memoryUsageMb: number | null; cpuPercent: number | null }>
}

/** The newer runner interface: the older one plus optional injection and paging. */
export interface ProjectRunner extends ProjectRunnerV1 {
  setSource?(source: ProjectSourceProvider): void
  setOnServerLog?(callback: ServerLogCallback): void
  setObservabilityStorage?(storage: FileStorageProvider): void
  getLogsPaginated?(server: RunningServer, options?: { limit?: number; before?: string }): Promise<PaginatedLogsResult>
}

export interface EncryptionProvider {
  encrypt(plain: string): Promise<string>
  decrypt(encrypted: string): Promise<string>
}

/** The part of MastraAdmin's storage that the build orchestrator uses. */
export interface AdminStorage {
  getBuild(id: string): Promise<Build | null>
  getDeployment(id: string): Promise<Deployment | null>
  getProject(id: string): Promise<Project | null>
  getProjectEnvVars(projectId: string): Promise<EncryptedEnvVar[]>
  updateBuild(id: string, changes: Partial<Build>): Promise<Build>
  updateBuildStatus(id: string, status: Build['status']): Promise<Build>
  appendBuildLogs(id: string, logs: string): Promise<void>
  updateDeployment(id: string, changes: Partial<Deployment>): Promise<Deployment>
  updateDeploymentStatus(id: string, status: Deployment['status']): Promise<Deployment>
  createRunningServer(server: RunningServer): Promise<RunningServer>
  getRunningServerForDeployment(deploymentId: string): Promise<RunningServer | null>
  stopRunningServer(id: string): Promise<void>
}
