// Compiled with `tsc --strict` by admin-types.spec.ts: MastraAdmin's own interfaces (declared in
// this folder as MastraAdmin publishes them) must accept this package's classes and entities,
// and this package must accept MastraAdmin's, in both directions, without casts.
import * as ours from '../../../index'
import { LocalProcessRunner, LocalProjectSource } from '../../../index'
import type * as admin from './entities'
import { BuildOrchestratorShape } from './orchestrator'
import type {
  AdminStorage,
  EdgeRouterProvider,
  EncryptionProvider,
  FileStorageProvider,
  PaginatedLogsResult,
  ProjectRunner,
  ProjectRunnerV1,
  ProjectSourceProvider,
  ServerLogCallback,
} from './providers'

declare const storage: AdminStorage
declare const encryption: EncryptionProvider
declare const theirRouter: EdgeRouterProvider
declare const theirSource: ProjectSourceProvider
declare const theirFiles: FileStorageProvider
declare const theirLog: ServerLogCallback

// A configuration written for the TypeScript runner (with tracesEndpoint) is accepted as is.
declare const upstreamConfig: admin.LocalRunnerConfig
const configured = new LocalProcessRunner(upstreamConfig)
const withTraces = new LocalProcessRunner({ tracesEndpoint: 'http://localhost:3001/api/spans/publish', redeployDrainMs: 5000 })
const resolvedTraces: string | null = withTraces.getConfig().tracesEndpoint
const logPath: string | null | undefined = ({} as ours.Build).logPath

// The runner is a ProjectRunner in the older and the newer shape.
const runner = new LocalProcessRunner({ buildDir: '/tmp/builds' })
const asNew: ProjectRunner = runner
const asOld: ProjectRunnerV1 = new LocalProcessRunner()
const asNewLiteral: ProjectRunner = new LocalProcessRunner()

// MastraAdmin's providers are accepted by the runner's setters.
runner.setRouter(theirRouter)
runner.setSource(theirSource)
runner.setOnServerLog(theirLog)
asNew.setSource?.(theirSource)
asNew.setOnServerLog?.(theirLog)
asNew.setObservabilityStorage?.(theirFiles)

// The package's own provider interfaces accept MastraAdmin's providers.
const ourRouter: ours.EdgeRouterProvider = theirRouter
const ourSource: ours.ProjectSourceProvider = theirSource
const ourFiles: ours.FileStorageProvider = theirFiles
const backToTheirFiles: FileStorageProvider = ourFiles

// LocalProjectSource is a MastraAdmin ProjectSourceProvider.
const local = new LocalProjectSource({ basePaths: ['/srv/projects'], maxDepth: 2, watchChanges: true, watchDebounceMs: 100 })
const theirView: ProjectSourceProvider = local
const stopWatching: () => void = local.watchChanges({ id: 'p', name: 'p', type: 'local', path: '/srv/projects/p' }, (event: admin.ChangeEvent) => {
  const kind: 'add' | 'change' | 'unlink' = event.type
  return kind
})

// Entities, theirs to ours.
declare const theirProject: admin.Project
declare const theirDeployment: admin.Deployment
declare const theirBuild: admin.Build
declare const theirServer: admin.RunningServer
declare const theirRoute: admin.RouteInfo
declare const theirRouteConfig: admin.RouteConfig
declare const theirSourceEntry: admin.ProjectSource
declare const theirEnvVar: admin.EncryptedEnvVar
declare const theirChange: admin.ChangeEvent
declare const theirFile: admin.FileInfo
const p1: ours.Project = theirProject
const d1: ours.Deployment = theirDeployment
const b1: ours.Build = theirBuild
const s1: ours.RunningServer = theirServer
const r1: ours.RouteInfo = theirRoute
const rc1: ours.RouteConfig = theirRouteConfig
const ps1: ours.ProjectSource = theirSourceEntry
const e1: ours.EncryptedEnvVar = theirEnvVar
const c1: ours.ChangeEvent = theirChange
const f1: ours.FileInfo = theirFile

// Entities, ours to theirs.
declare const ourProject: ours.Project
declare const ourDeployment: ours.Deployment
declare const ourBuild: ours.Build
declare const ourServer: ours.RunningServer
declare const ourRoute: ours.RouteInfo
declare const ourRouteConfig: ours.RouteConfig
declare const ourSourceEntry: ours.ProjectSource
declare const ourEnvVar: ours.EncryptedEnvVar
declare const ourChange: ours.ChangeEvent
declare const ourFile: ours.FileInfo
declare const ourPage: ours.PaginatedLogsResult
declare const ourEntry: ours.LocalProjectSourceEntry
const p2: admin.Project = ourProject
const d2: admin.Deployment = ourDeployment
const b2: admin.Build = ourBuild
const s2: admin.RunningServer = ourServer
const r2: admin.RouteInfo = ourRoute
const rc2: admin.RouteConfig = ourRouteConfig
const ps2: admin.ProjectSource = ourSourceEntry
const e2: admin.EncryptedEnvVar = ourEnvVar
const c2: admin.ChangeEvent = ourChange
const f2: admin.FileInfo = ourFile
const pg2: PaginatedLogsResult = ourPage
const entry2: admin.ProjectSource = ourEntry

// What the runner resolves flows into MastraAdmin's storage and back.
async function roundTrip(): Promise<void> {
  const built: admin.Build = await runner.build(theirProject, theirBuild, { envVars: { A: '1' } }, (line) => line)
  const server: admin.RunningServer = await runner.deploy(theirProject, theirDeployment, built, { port: 4111 })
  await storage.createRunningServer(server)
  const stored = await storage.getRunningServerForDeployment(theirDeployment.id)
  if (stored) await runner.stop(stored)
  const page: PaginatedLogsResult | undefined = await asNew.getLogsPaginated?.(server, { limit: 10 })
  const listed: admin.ProjectSource[] = await local.listProjects('team-1')
  const added: admin.ProjectSource = await local.addProject('/elsewhere/app')
  void page
  void listed
  void added
}

// The orchestrator-shaped caller takes the package's runner and source.
const orchestrator = new BuildOrchestratorShape(storage, encryption, runner, theirRouter, local)
const orchestratorWithOld = new BuildOrchestratorShape(storage, encryption, new LocalProcessRunner())

// Misuse is still rejected (each line fails to compile without its directive).
// @ts-expect-error a GitHub source config needs its three fields
const badConfig: ours.Project = { ...theirProject, sourceConfig: { repoFullName: 'o/r' } }
// @ts-expect-error route states are a closed set
const badRoute: admin.RouteInfo = { ...ourRoute, status: 'gone' }
// @ts-expect-error an env var needs its timestamps
const badEnv: ours.EncryptedEnvVar = { key: 'A', encryptedValue: 'x', isSecret: false }
// @ts-expect-error a router must be able to register routes
runner.setRouter({ type: 'x', async removeRoute() {}, async getRoute() { return null } })
// @ts-expect-error a file storage needs every method
const badFiles: ours.FileStorageProvider = { type: 'local', async write() {} }
// @ts-expect-error a change event's type is add, change or unlink
const badChange: admin.ChangeEvent = { ...ourChange, type: 'rename' }
// @ts-expect-error tracesEndpoint is a URL string
new LocalProcessRunner({ tracesEndpoint: 3001 })
// @ts-expect-error maxDepth is a number
new LocalProjectSource({ basePaths: ['/p'], maxDepth: '2' })
// @ts-expect-error watchChanges needs a callback
local.watchChanges({ id: 'p', name: 'p', type: 'local', path: '/p' })

export {
  configured, resolvedTraces, logPath,
  asNew, asOld, asNewLiteral, ourRouter, ourSource, backToTheirFiles, theirView, stopWatching, p1, d1, b1, s1, r1, rc1,
  ps1, e1, c1, f1, p2, d2, b2, s2, r2, rc2, ps2, e2, c2, f2, pg2, entry2, roundTrip, orchestrator, orchestratorWithOld,
  badConfig, badRoute, badEnv, badFiles, badChange,
}
