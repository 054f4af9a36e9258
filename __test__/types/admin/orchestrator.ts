// A caller shaped like MastraAdmin's `BuildOrchestrator`: it takes its providers typed by
// MastraAdmin's interfaces and drives the runner the way MastraAdmin does.
import type { ProjectSource } from './entities'
import type { AdminStorage, EdgeRouterProvider, EncryptionProvider, ProjectRunner, ProjectSourceProvider } from './providers'

export class BuildOrchestratorShape {
  constructor(
    private readonly storage: AdminStorage,
    private readonly encryption: EncryptionProvider,
    private readonly runner?: ProjectRunner,
    private readonly router?: EdgeRouterProvider,
    private readonly source?: ProjectSourceProvider,
  ) {}

  async process(buildId: string): Promise<void> {
    const build = await this.storage.getBuild(buildId)
    const deployment = build && (await this.storage.getDeployment(build.deploymentId))
    const project = deployment && (await this.storage.getProject(deployment.projectId))
    if (!build || !deployment || !project || !this.runner || !this.source) return
    const found: ProjectSource = await this.source.getProject(project.id)
    await this.source.getProjectPath(found, `/tmp/builds/${buildId}`)
    const envVars: Record<string, string> = {}
    for (const env of await this.storage.getProjectEnvVars(project.id)) {
      envVars[env.key] = env.isSecret ? await this.encryption.decrypt(env.encryptedValue) : env.encryptedValue
    }
    const built = await this.runner.build(project, build, { envVars }, (log) => {
      void this.storage.appendBuildLogs(buildId, log)
    })
    if (built.status === 'failed') throw new Error(built.errorMessage ?? 'Build failed')
    await this.storage.updateBuildStatus(buildId, 'deploying')
    const server = await this.runner.deploy(project, deployment, built, { envVars })
    if (this.router && deployment.slug) {
      await this.router.registerRoute({
        deploymentId: deployment.id,
        projectId: project.id,
        subdomain: deployment.slug,
        targetHost: server.host,
        targetPort: server.port,
      })
    }
    await this.storage.createRunningServer(server)
    await this.storage.updateDeployment(deployment.id, { status: 'running', currentBuildId: buildId, internalHost: `${server.host}:${server.port}` })
  }

  async stopDeployment(deploymentId: string): Promise<void> {
    const server = await this.storage.getRunningServerForDeployment(deploymentId)
    if (server && this.runner) await this.runner.stop(server)
    const route = this.router ? await this.router.getRoute(deploymentId) : null
    if (route && this.router) await this.router.removeRoute(route.routeId)
    if (server) await this.storage.stopRunningServer(server.id)
  }
}
