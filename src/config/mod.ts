// Node configuration: the schema of every key, and loading it from defaults, a YAML or JSON file,
// GREGOR_* environment variables and flags, with one-line errors naming key, value and what is allowed.

export {
  CONFIG_SCHEMA,
  configHelp,
  configTable,
  defaultText,
  envName,
  flagName,
  KEY_GROUPS,
  type KeyKind,
  type KeySpec,
} from "./schema.ts";
export {
  ConfigError,
  type ConfigErrorOptions,
  configFileArg,
  type ConfigInput,
  type ConfigSource,
  DEFAULT_CLUSTER_PORT,
  insecurePublicRefusal,
  isLoopbackHost,
  loadConfig,
  type LoadedConfig,
  loadYaml,
  metricsConfig,
  nearestOf,
  type NodeSettings,
  type TlsSettings,
  toNodeConfig,
} from "./load.ts";
