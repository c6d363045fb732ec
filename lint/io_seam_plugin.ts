// Deno lint plugin that enforces the I/O seam (DESIGN.md §2): code under src/ (outside src/io/deno/
// and src/io/node/) and sim/ reaches time, randomness and the operating system only through the Env it is given.

import { fileURLToPath } from "node:url";

// Deno.lint.Node omits two node types the parser does produce.
type Node = Deno.lint.Node | Deno.lint.AccessorProperty | Deno.lint.TSParameterProperty;
type Identifier = Deno.lint.Identifier;

/** Which seam rules a file is subject to, decided by where it sits in the repository. */
type Area = "io-host" | "core" | "sim" | "exempt";

const WHERE = "is not allowed under src/ (outside src/io/deno/ and src/io/node/) or sim/";
const CLOCK = "read time through env.clock so the simulator controls it";
const TIMER = "wait with env.clock.sleep so the simulator controls time";
const RANDOM = "draw randomness from env.random so a seed reproduces the run";
const CRYPTO = "draw randomness from env.random and hash with env.crypto: WebCrypto's promises " +
  "settle on a thread pool, outside the simulation, so a seed would not reproduce the run";
const OS = "reach the operating system only through the Env passed in (env.clock, env.random, " +
  "env.net, env.disk) so the simulator can stand in for it";
const GC = "garbage-collection timing is nondeterministic, so a seed would not reproduce the run";

/** Global identifiers that are forbidden outright, with the reason shown to the reader. */
const FORBIDDEN_GLOBALS: ReadonlyMap<string, string> = new Map([
  ["Deno", OS],
  ["setTimeout", TIMER],
  ["setInterval", TIMER],
  ["Date", CLOCK],
  ["performance", CLOCK],
  ["crypto", CRYPTO],
  ["WeakRef", GC],
  ["FinalizationRegistry", GC],
  ["process", OS],
]);

/** Members of otherwise allowed globals that are forbidden: `Math.random`, `AbortSignal.timeout`. */
const FORBIDDEN_MEMBERS: ReadonlyMap<string, ReadonlyMap<string, string>> = new Map([
  ["Math", new Map([["random", RANDOM]])],
  ["AbortSignal", new Map([["timeout", TIMER]])],
]);

/**
 * Members of Deno that test files beside the code may use: registering a test touches no I/O, and
 * STYLE.md puts `*_test.ts` next to the module it tests. Every other Deno API stays forbidden.
 */
const DENO_MEMBERS_IN_TESTS: ReadonlySet<string> = new Set(["test", "TestContext"]);

/** Names through which code can reach the global object (`globalThis.Date`). */
const GLOBAL_OBJECTS: ReadonlySet<string> = new Set(["globalThis", "self", "window"]);

/** Node modules (without the `node:` prefix) that are forbidden whole. */
const FORBIDDEN_MODULES: ReadonlyMap<string, string> = new Map([
  ["crypto", RANDOM],
  ["perf_hooks", CLOCK],
  ["fs", OS],
  ["fs/promises", OS],
  ["net", OS],
  ["dgram", OS],
  ["dns", OS],
  ["dns/promises", OS],
  ["http", OS],
  ["https", OS],
  ["http2", OS],
  ["tls", OS],
  ["os", OS],
  ["child_process", OS],
  ["worker_threads", OS],
  ["cluster", OS],
  ["process", OS],
]);

/** Node modules from which only some names are forbidden; `setImmediate` stays allowed. */
const TIMER_MODULES: ReadonlySet<string> = new Set(["timers", "timers/promises"]);
const FORBIDDEN_TIMER_EXPORTS: ReadonlySet<string> = new Set(["setTimeout", "setInterval"]);

const DEFAULT_EXPORT_MESSAGE = "export default is not allowed under src/ or sim/: use a named " +
  "export (STYLE.md) so every importer uses the same name and a search finds them all.";

const REPO_ROOT = repoRoot();

/** The repository root (the parent of lint/) with forward slashes and a trailing slash. */
function repoRoot(): string | null {
  const url = new URL("../", import.meta.url);
  if (url.protocol !== "file:") return null;
  const root = fileURLToPath(url).replaceAll("\\", "/");
  return root.endsWith("/") ? root : root + "/";
}

/**
 * Classifies `filename`. A path inside the repository is matched from the repository root, so a
 * checkout that itself lives under some `src/` directory is not misread; any other path (as in
 * tests) is matched by its `/src/` and `/sim/` segments.
 */
function areaOf(filename: string): Area {
  const path = filename.replaceAll("\\", "/");
  const inRepo = REPO_ROOT !== null && path.startsWith(REPO_ROOT);
  const rel = "/" + (inRepo ? path.slice(REPO_ROOT.length) : path);
  const has = (dir: string): boolean => inRepo ? rel.startsWith(dir) : rel.includes(dir);
  if (has("/src/io/deno/") || has("/src/io/node/")) return "io-host";
  if (has("/src/")) return "core";
  if (has("/sim/")) return "sim";
  return "exempt";
}

function isTestFile(filename: string): boolean {
  return /_test\.[cm]?[jt]sx?$/.test(filename);
}

/** Whether `id` is the `Deno` of `Deno.test(...)` or of the type `Deno.TestContext`. */
function isDenoTestApi(id: Identifier): boolean {
  if (id.name !== "Deno") return false;
  const p = id.parent;
  const member = p.type === "MemberExpression" && sameNode(p.object, id)
    ? memberName(p)
    : p.type === "TSQualifiedName" && sameNode(p.left, id)
    ? p.right.name
    : null;
  return member !== null && DENO_MEMBERS_IN_TESTS.has(member);
}

function message(what: string, why: string): string {
  return `${what} ${WHERE}: ${why}.`;
}

function sameNode(a: Node | null | undefined, b: Node): boolean {
  return a != null && a.range[0] === b.range[0] && a.range[1] === b.range[1];
}

/**
 * Whether `id` names a variable (value or type) rather than a property key, label, member name or
 * import/export alias. Binding positions count as references here; scope lookup then finds them
 * declared and skips them.
 */
function isReference(id: Identifier): boolean {
  const p = id.parent as Node;
  switch (p.type) {
    case "MemberExpression":
      return p.computed || !sameNode(p.property, id);
    case "Property":
      // A shorthand `{ Date }` reads the variable `Date`; its key and value share one range.
      return p.computed || p.shorthand || !sameNode(p.key, id);
    case "PropertyDefinition":
    case "MethodDefinition":
    case "AccessorProperty":
    case "TSAbstractPropertyDefinition":
    case "TSAbstractMethodDefinition":
    case "TSPropertySignature":
    case "TSMethodSignature":
      return p.computed || !sameNode(p.key, id);
    case "TSQualifiedName":
      return !sameNode(p.right, id);
    case "TSEnumMember":
      return !sameNode(p.id, id);
    case "TSMappedType":
      return !sameNode(p.key, id);
    case "ExportSpecifier":
      // In `export { x } from "m"`, `x` names an export of "m", not a variable here.
      return sameNode(p.local, id) && p.parent.source === null;
    case "ImportSpecifier":
    case "ImportDefaultSpecifier":
    case "ImportNamespaceSpecifier":
    case "ExportAllDeclaration":
    case "LabeledStatement":
    case "BreakStatement":
    case "ContinueStatement":
    case "MetaProperty":
    case "TSImportType":
    case "TSModuleDeclaration":
    case "TSTypePredicate":
      return false;
    default:
      return true;
  }
}

function addPatternNames(pattern: Node | null | undefined, names: Set<string>): void {
  if (pattern == null) return;
  switch (pattern.type) {
    case "Identifier":
      names.add(pattern.name);
      break;
    case "ObjectPattern":
      for (const prop of pattern.properties) {
        addPatternNames(prop.type === "Property" ? prop.value : prop, names);
      }
      break;
    case "ArrayPattern":
      for (const element of pattern.elements) addPatternNames(element, names);
      break;
    case "RestElement":
      addPatternNames(pattern.argument, names);
      break;
    case "AssignmentPattern":
      addPatternNames(pattern.left, names);
      break;
    case "TSParameterProperty":
      addPatternNames(pattern.parameter, names);
      break;
    case "TSTypeParameter":
      names.add(pattern.name.name);
      break;
  }
}

/** Adds the names a statement declares in its own block (let, const, class, function, import…). */
function addStatementDeclarations(stmt: Node | null | undefined, names: Set<string>): void {
  if (stmt == null) return;
  switch (stmt.type) {
    case "VariableDeclaration":
      for (const declarator of stmt.declarations) addPatternNames(declarator.id, names);
      break;
    case "FunctionDeclaration":
    case "ClassDeclaration":
    case "TSDeclareFunction":
    case "TSEnumDeclaration":
    case "TSInterfaceDeclaration":
    case "TSTypeAliasDeclaration":
    case "TSImportEqualsDeclaration":
      if (stmt.id) names.add(stmt.id.name);
      break;
    case "TSModuleDeclaration":
      if (stmt.id.type === "Identifier") names.add(stmt.id.name);
      break;
    case "ImportDeclaration":
      for (const specifier of stmt.specifiers) names.add(specifier.local.name);
      break;
    case "ExportNamedDeclaration":
    case "ExportDefaultDeclaration":
      addStatementDeclarations(stmt.declaration, names);
      break;
  }
}

/** Adds `var` names hoisted out of nested blocks, without entering nested functions. */
function addHoistedVars(stmt: Node | null | undefined, names: Set<string>): void {
  if (stmt == null) return;
  switch (stmt.type) {
    case "VariableDeclaration":
      if (stmt.kind === "var") addStatementDeclarations(stmt, names);
      break;
    case "ExportNamedDeclaration":
      addHoistedVars(stmt.declaration, names);
      break;
    case "BlockStatement":
      for (const s of stmt.body) addHoistedVars(s, names);
      break;
    case "IfStatement":
      addHoistedVars(stmt.consequent, names);
      addHoistedVars(stmt.alternate, names);
      break;
    case "ForStatement":
      addHoistedVars(stmt.init, names);
      addHoistedVars(stmt.body, names);
      break;
    case "ForInStatement":
    case "ForOfStatement":
      addHoistedVars(stmt.left, names);
      addHoistedVars(stmt.body, names);
      break;
    case "WhileStatement":
    case "DoWhileStatement":
    case "LabeledStatement":
    case "WithStatement":
      addHoistedVars(stmt.body, names);
      break;
    case "TryStatement":
      addHoistedVars(stmt.block, names);
      addHoistedVars(stmt.handler?.body, names);
      addHoistedVars(stmt.finalizer, names);
      break;
    case "SwitchStatement":
      for (const c of stmt.cases) for (const s of c.consequent) addHoistedVars(s, names);
      break;
  }
}

/** The names `scope` declares for code nested inside it; empty for nodes that open no scope. */
function declaredNames(scope: Node): Set<string> {
  const names = new Set<string>();
  switch (scope.type) {
    case "Program":
      for (const s of scope.body) {
        addStatementDeclarations(s, names);
        addHoistedVars(s, names);
      }
      break;
    case "BlockStatement":
    case "StaticBlock":
    case "TSModuleBlock":
      for (const s of scope.body) addStatementDeclarations(s, names);
      break;
    case "SwitchStatement":
      for (const c of scope.cases) for (const s of c.consequent) addStatementDeclarations(s, names);
      break;
    case "ForStatement":
      addStatementDeclarations(scope.init, names);
      break;
    case "ForInStatement":
    case "ForOfStatement":
      addStatementDeclarations(scope.left, names);
      break;
    case "CatchClause":
      addPatternNames(scope.param, names);
      break;
    case "FunctionExpression":
    case "ClassExpression":
      if (scope.id) names.add(scope.id.name);
      break;
    case "TSInferType":
      addPatternNames(scope.typeParameter, names);
      break;
    case "TSMappedType":
      names.add(scope.key.name);
      break;
  }
  if (
    scope.type === "FunctionDeclaration" || scope.type === "FunctionExpression" ||
    scope.type === "ArrowFunctionExpression"
  ) {
    addHoistedVars(scope.body, names);
  }
  // Parameters of functions and of function types, and type parameters of any generic.
  for (const param of paramsOf(scope)) addPatternNames(param, names);
  const typeParameters = (scope as { typeParameters?: unknown }).typeParameters;
  for (const param of paramsOf(typeParameters)) addPatternNames(param, names);
  return names;
}

/**
 * The `params` of a function, function type or type-parameter list, else none. The value is
 * checked rather than the node type because AST nodes answer `in` for every field name.
 */
function paramsOf(node: unknown): Node[] {
  const params = (node as { params?: unknown } | null | undefined)?.params;
  return Array.isArray(params) ? params : [];
}

/** The name of a module specifier without its `node:` prefix. */
function nodeModuleName(specifier: string): string {
  return specifier.startsWith("node:") ? specifier.slice("node:".length) : specifier;
}

/** The name a key or specifier spells out: `name` or `"name"`. A computed `[name]` is not one. */
function staticName(node: Node, computed = false): string | null {
  if (node.type === "Identifier") return computed ? null : node.name;
  if (node.type === "Literal" && typeof node.value === "string") return node.value;
  return null;
}

/** The statically known property name of `expr.name` or `expr["name"]`, else null. */
function memberName(expr: Deno.lint.MemberExpression): string | null {
  return staticName(expr.property, expr.computed);
}

function parentOf(node: Node): Node | null {
  if (node.type === "Program" || node.type === "Line" || node.type === "Block") return null;
  return node.parent;
}

const IO_SEAM: Deno.lint.Rule = {
  create(ctx) {
    const area = areaOf(ctx.filename);
    if (area !== "core" && area !== "sim") return {};
    const testFile = isTestFile(ctx.filename);

    const scopeCache = new Map<string, Set<string>>();
    const reported = new Set<string>();

    function report(node: Node, what: string, why: string): void {
      const key = `${node.range[0]}:${node.range[1]}:${what}`;
      if (reported.has(key)) return;
      reported.add(key);
      ctx.report({ range: node.range, message: message(what, why) });
    }

    /** Whether some enclosing scope of `id` declares its name, so it is not the global. */
    function isShadowed(id: Identifier): boolean {
      for (let scope: Node | null = id.parent; scope != null; scope = parentOf(scope)) {
        const key = `${scope.type}:${scope.range[0]}:${scope.range[1]}`;
        let names = scopeCache.get(key);
        if (names === undefined) {
          names = declaredNames(scope);
          scopeCache.set(key, names);
        }
        if (names.has(id.name)) return true;
      }
      return false;
    }

    /** The global that `expr` denotes (`Math`, `globalThis.Math`, `(self as X).Math`), or null. */
    function globalName(expr: Node): string | null {
      switch (expr.type) {
        case "Identifier":
          return isShadowed(expr) ? null : expr.name;
        case "TSAsExpression":
        case "TSSatisfiesExpression":
        case "TSNonNullExpression":
        case "TSTypeAssertion":
        case "ChainExpression":
          return globalName(expr.expression);
        case "MemberExpression": {
          const object = globalName(expr.object);
          if (object === null || !GLOBAL_OBJECTS.has(object)) return null;
          return memberName(expr);
        }
        default:
          return null;
      }
    }

    /** Reports `object.member` if it names a forbidden global or forbidden member. */
    function checkMember(node: Node, object: string | null, member: string | null): void {
      if (object === null || member === null) return;
      const forbidden = GLOBAL_OBJECTS.has(object)
        ? FORBIDDEN_GLOBALS.get(member)
        : FORBIDDEN_MEMBERS.get(object)?.get(member);
      if (forbidden !== undefined) report(node, `${object}.${member}`, forbidden);
    }

    /** `const { random } = Math` and `({ Date } = globalThis)` read members too. */
    function checkDestructuring(pattern: Node, source: Node | null): void {
      if (source === null || pattern.type !== "ObjectPattern") return;
      const object = globalName(source);
      if (object === null) return;
      for (const prop of pattern.properties) {
        if (prop.type !== "Property") continue;
        checkMember(prop, object, staticName(prop.key, prop.computed));
      }
    }

    function checkModule(node: Node, specifier: Node | null, names: readonly Node[] | "all"): void {
      if (specifier === null || specifier.type !== "Literal") return;
      if (typeof specifier.value !== "string") return;
      const module = nodeModuleName(specifier.value);
      const banned = FORBIDDEN_MODULES.get(module);
      if (banned !== undefined) {
        report(node, `Importing "${specifier.value}"`, banned);
        return;
      }
      if (!TIMER_MODULES.has(module)) return;
      if (names === "all") {
        report(
          node,
          `Importing all of "${specifier.value}"`,
          `import only setImmediate, by name; for delays, ${TIMER}`,
        );
        return;
      }
      for (const name of names) {
        const imported = staticName(name);
        if (imported !== null && FORBIDDEN_TIMER_EXPORTS.has(imported)) {
          report(name, `${imported} from "${specifier.value}"`, TIMER);
        }
      }
    }

    return {
      Identifier(node) {
        const why = FORBIDDEN_GLOBALS.get(node.name);
        if (why === undefined || !isReference(node) || isShadowed(node)) return;
        if (testFile && isDenoTestApi(node)) return;
        report(node, node.name, why);
      },
      MemberExpression(node) {
        const member = memberName(node);
        if (member === null) return;
        checkMember(node, globalName(node.object), member);
      },
      VariableDeclarator(node) {
        checkDestructuring(node.id, node.init);
      },
      AssignmentExpression(node) {
        checkDestructuring(node.left, node.right);
      },
      ImportDeclaration(node) {
        const named: Node[] = [];
        let whole = false;
        for (const specifier of node.specifiers) {
          if (specifier.type === "ImportSpecifier") named.push(specifier.imported);
          else whole = true;
        }
        checkModule(node, node.source, whole ? "all" : named);
      },
      ExportNamedDeclaration(node) {
        checkModule(node, node.source, node.specifiers.map((s) => s.local));
      },
      ExportAllDeclaration(node) {
        checkModule(node, node.source, "all");
      },
      ImportExpression(node) {
        checkModule(node, node.source, "all");
      },
      TSExternalModuleReference(node) {
        checkModule(node, node.expression, "all");
      },
    };
  },
};

const NAMED_EXPORTS_ONLY: Deno.lint.Rule = {
  create(ctx) {
    if (areaOf(ctx.filename) === "exempt") return {};
    return {
      ExportDefaultDeclaration(node) {
        ctx.report({ node, message: DEFAULT_EXPORT_MESSAGE });
      },
      ExportSpecifier(node) {
        if (staticName(node.exported) === "default") {
          ctx.report({ node, message: DEFAULT_EXPORT_MESSAGE });
        }
      },
    };
  },
};

/**
 * The `gregormq` lint plugin. Rules:
 * - `io-seam`: under src/ (outside src/io/deno/ and src/io/node/) and sim/, forbids the globals Deno, setTimeout,
 *   setInterval, Date, performance, crypto, WeakRef and FinalizationRegistry (also through
 *   globalThis), Math.random, AbortSignal.timeout, and importing node:crypto, node:perf_hooks or
 *   setTimeout/setInterval from node:timers. Locally declared names of the same spelling are fine,
 *   and so are `Deno.test` and `Deno.TestContext` in `*_test.ts` files.
 * - `named-exports-only`: under src/ (including src/io/deno/ and src/io/node/) and sim/, forbids default exports.
 *
 * A lint plugin must be a default export; lint/ itself is outside the paths these rules check.
 */
const plugin: Deno.lint.Plugin = {
  name: "gregormq",
  rules: {
    "io-seam": IO_SEAM,
    "named-exports-only": NAMED_EXPORTS_ONLY,
  },
};

export default plugin;
