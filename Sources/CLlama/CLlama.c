// Empty: the module only re-exports llama.h; the libraries come from the cache prefix.
