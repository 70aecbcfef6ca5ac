// PostgreSQL in a container via testcontainers, used only where a Docker engine
// answers. These machines have only the docker client, so this returns undefined
// quickly there instead of waiting on testcontainers' own discovery.
import { existsSync } from 'node:fs';

export interface ContainerDatabase {
  readonly uri: string;
  stop(): Promise<void>;
}

export async function startContainerPostgres(): Promise<ContainerDatabase | undefined> {
  if (!process.env.DOCKER_HOST && !existsSync('/var/run/docker.sock')) return undefined;
  try {
    const { GenericContainer, Wait } = await import('testcontainers');
    const container = await new GenericContainer('postgres:17-alpine')
      .withEnvironment({ POSTGRES_PASSWORD: 'pgws' })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    const uri = `postgres://postgres:pgws@${container.getHost()}:${container.getMappedPort(5432)}/postgres`;
    return { uri, stop: async () => void (await container.stop()) };
  } catch {
    return undefined;
  }
}
