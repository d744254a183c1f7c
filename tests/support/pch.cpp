// Owner of the precompiled header shared by every test binary (CAF and
// GoogleTest headers parse once instead of once per test file).
