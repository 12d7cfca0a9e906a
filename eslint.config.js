// @ts-check
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

/** Packages each package may import; core, layers, remote, layout and registry never import each other. */
const boundaries = {
  core: [],
  layers: ['core'],
  remote: ['core'],
  layout: ['core'],
  registry: ['core'],
  testing: ['core'],
};
const all = ['core', 'layers', 'remote', 'layout', 'registry', 'testing', 'cli'];

/** packagePatterns are the imports `pkg` may not use: every package outside its boundary. */
const packagePatterns = (/** @type {string} */ pkg, /** @type {string[]} */ allowed) =>
  all
    .filter((p) => p !== pkg && !allowed.includes(p))
    .map((p) => ({
      group: [`@lading/${p}`, `@lading/${p}/*`],
      message: `${pkg} must not depend on ${p} (docs/design.md, Packages).`,
    }));

/**
 * remote's distribution layer (the spec's endpoints, sessions, the
 * transport) sits below the verbs: it may not import them, nor the Image
 * and Layer model they push and pull.
 */
const remoteDistribution = [
  'packages/remote/src/client.ts',
  'packages/remote/src/upload.ts',
  'packages/remote/src/listing.ts',
  'packages/remote/src/session.ts',
  'packages/remote/src/errors.ts',
  'packages/remote/src/credentials.ts',
  'packages/remote/src/internal/**/*.ts',
];
const belowTheVerbs = 'the distribution layer sits below the verbs (remote README, Structure).';

// eslint-disable-next-line no-restricted-syntax -- ESLint loads the default export
export default tseslint.config(
  {
    ignores: [
      '**/dist/**',
      '**/node_modules/**',
      '**/coverage/**',
      'bench/corpus/**',
      'bench/.work/**',
      'docs/api/**',
    ],
  },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  ...tseslint.configs.stylisticTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: {
          allowDefaultProject: ['*.config.ts', '*.config.js'],
          defaultProject: 'tsconfig.base.json',
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      // Wire types are plain `type`s named after the spec.
      '@typescript-eslint/consistent-type-definitions': 'off',
      '@typescript-eslint/consistent-type-exports': 'error',
      '@typescript-eslint/explicit-module-boundary-types': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportDefaultDeclaration', message: 'Use named exports.' },
        { selector: 'TSEnumDeclaration', message: 'Use an as-const object and a union type.' },
      ],
    },
  },
  ...Object.entries(boundaries).map(([pkg, allowed]) => ({
    files: [`packages/${pkg}/src/**/*.ts`],
    rules: {
      'no-restricted-imports': ['error', { patterns: packagePatterns(pkg, allowed) }],
    },
  })),
  {
    files: remoteDistribution,
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: '@lading/core',
              importNames: ['Image', 'ImageIndex', 'Layer', 'IndexChild', 'BlobSource', 'Target'],
              message: belowTheVerbs,
            },
            // the package's entry point re-exports the verbs
            ...['./index.js', '../index.js', '../../index.js'].map((name) => ({
              name,
              message: belowTheVerbs,
            })),
          ],
          patterns: [
            ...packagePatterns('remote', boundaries.remote),
            {
              group: ['**/write.js', '**/pull.js', '**/registry-target.js'],
              message: belowTheVerbs,
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/explicit-module-boundary-types': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // Plain JS here is Node scripts; `no-undef` does not know Node's globals.
    files: ['**/*.js', '**/*.mjs'],
    rules: { 'no-undef': 'off', '@typescript-eslint/explicit-module-boundary-types': 'off' },
  },
  prettier,
);
