// PostgreSQL 17 in a container (testcontainers' PostgreSQL module), for the `pg17` vitest
// project: the database-facing suite runs on it as well as on the embedded PostgreSQL 18.
// vitest.config.ts adds that project only where a Docker engine answers.

export interface ContainerDatabase {
  readonly uri: string;
  readonly version: string;
  stop(): Promise<void>;
}

export const PG17_IMAGE = 'postgres:17';

export async function startContainerPostgres(image = PG17_IMAGE): Promise<ContainerDatabase> {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  // Tests create databases and open many connections of their own, as they do on the embedded server.
  // A password no log line could contain by chance (tests check that it never appears).
  const container = await new PostgreSqlContainer(image)
    .withUsername('postgres')
    .withPassword('pgws-pg17-container-password')
    .withCommand(['postgres', '-c', 'max_connections=300'])
    .start();
  const uri = `postgres://${container.getUsername()}:${container.getPassword()}@${container.getHost()}:${container.getPort()}/postgres`;
  const version = (await container.exec(['postgres', '--version'])).output.trim();
  return { uri, version, stop: async () => void (await container.stop({ timeout: 10_000 })) };
}
