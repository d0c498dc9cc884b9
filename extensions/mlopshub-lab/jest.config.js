module.exports = {
  testEnvironment: 'jsdom',
  transform: { '^.+\\.tsx?$': ['ts-jest', { tsconfig: { module: 'commonjs', esModuleInterop: true, types: ['jest'] } }] },
  testRegex: 'src/__tests__/.*\\.spec\\.ts$',
  moduleFileExtensions: ['ts', 'js', 'json']
};
