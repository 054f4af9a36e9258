// MastraAdmin's entities (`@mastra/admin` `constants.ts` and `types.ts`), declared here from
// their published shape so the package's own declarations can be checked against them.

export type DeploymentStatus = 'pending' | 'building' | 'running' | 'stopped' | 'failed'
export type DeploymentType = 'production' | 'staging' | 'preview'
export type BuildStatus = 'queued' | 'building' | 'deploying' | 'succeeded' | 'failed' | 'cancelled'
export type BuildTrigger = 'manual' | 'webhook' | 'schedule' | 'rollback'
export type HealthStatus = 'starting' | 'healthy' | 'unhealthy' | 'stopping'
export type SourceType = 'local' | 'github'
export type RouteStatus = 'pending' | 'active' | 'unhealthy' | 'error'

export interface LocalSourceConfig {
  path: string
}

export interface GitHubSourceConfig {
  repoFullName: string
  installationId: string
  isPrivate: boolean
}

export interface EncryptedEnvVar {
  key: string
  encryptedValue: string
  isSecret: boolean
  createdAt: Date
  updatedAt: Date
}

export interface Project {
  id: string
  teamId: string
  name: string
  slug: string
  sourceType: SourceType
  sourceConfig: LocalSourceConfig | GitHubSourceConfig
  defaultBranch: string
  envVars: EncryptedEnvVar[]
  createdAt: Date
  updatedAt: Date
}

export interface Deployment {
  id: string
  projectId: string
  type: DeploymentType
  branch: string
  slug: string
  status: DeploymentStatus
  currentBuildId: string | null
  publicUrl: string | null
  internalHost: string | null
  envVarOverrides: EncryptedEnvVar[]
  autoShutdown: boolean
  expiresAt: Date | null
  createdAt: Date
  updatedAt: Date
}

export interface Build {
  id: string
  deploymentId: string
  trigger: BuildTrigger
  triggeredBy: string
  commitSha: string
  commitMessage: string | null
  status: BuildStatus
  logs: string
  queuedAt: Date
  startedAt: Date | null
  completedAt: Date | null
  errorMessage: string | null
  /** Set by newer MastraAdmin once the build's log is stored. */
  logPath?: string | null
}

/** The TypeScript runner's configuration, as MastraAdmin's server writes it. */
export interface LocalRunnerConfig {
  portRange?: { start: number; end: number }
  maxConcurrentBuilds?: number
  defaultBuildTimeoutMs?: number
  logRetentionLines?: number
  buildBaseDir?: string
  globalEnvVars?: Record<string, string>
  /** The admin's span publish endpoint. */
  tracesEndpoint?: string
}

export interface RunningServer {
  id: string
  deploymentId: string
  buildId: string
  processId: number | null
  containerId: string | null
  host: string
  port: number
  healthStatus: HealthStatus
  lastHealthCheck: Date | null
  memoryUsageMb: number | null
  cpuPercent: number | null
  startedAt: Date
  stoppedAt: Date | null
}

export interface RouteConfig {
  deploymentId: string
  projectId: string
  subdomain: string
  targetHost: string
  targetPort: number
  tls?: boolean
}

export interface RouteInfo {
  routeId: string
  deploymentId: string
  publicUrl: string
  status: RouteStatus
  createdAt: Date
  lastHealthCheck?: Date
}

export interface RouteHealthStatus {
  healthy: boolean
  latencyMs?: number
  statusCode?: number
  error?: string
}

export interface ProjectSource {
  id: string
  name: string
  type: SourceType
  path: string
  defaultBranch?: string
  metadata?: Record<string, unknown>
}

export interface ChangeEvent {
  type: 'add' | 'change' | 'unlink'
  path: string
  timestamp: Date
}

export interface FileInfo {
  path: string
  size: number
  lastModified: Date
}
