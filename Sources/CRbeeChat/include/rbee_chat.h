// The chat templates of llama.cpp's common library (Jinja rendering, template fixes, capability
// detection) and its grammar tools (JSON schema conversion, GBNF parsing) behind a narrow C API
// with JSON strings across it, so Swift never sees C++ and no C++ exception ever reaches Swift:
// every function catches them all and reports them as an error.
#ifndef RBEE_CHAT_H
#define RBEE_CHAT_H

#ifdef __cplusplus
extern "C" {
#endif

struct llama_model;
struct llama_vocab;

/// A model's chat templates, parsed once; rendering reads them only.
typedef struct rbee_chat_templates rbee_chat_templates;

/// Parses the templates of `model` (its GGUF's template and `tool_use` variant) or, when
/// `template_text` is not NULL, that template text. With no model, `bos_token` and `eos_token`
/// (may be NULL) are what the template sees as `bos_token` and `eos_token`.
/// Returns NULL on failure with `*error` set to a message (free it with `rbee_chat_string_free`).
rbee_chat_templates * rbee_chat_templates_init(
    const struct llama_model * model, const char * template_text, const char * bos_token, const char * eos_token, char ** error);

void rbee_chat_templates_free(rbee_chat_templates * templates);

/// Renders a conversation. `request_json`: {"messages": [OpenAI messages; content a string or an
/// array of text parts], "add_generation_prompt": bool (default true), "chat_template_kwargs":
/// {name: any JSON value}, "enable_thinking": bool (default true)}.
/// Returns {"prompt": "...", "additional_stops": ["..."], "supports_thinking": bool}, or NULL
/// with `*error` set (the template's own message when it raised).
char * rbee_chat_render(const rbee_chat_templates * templates, const char * request_json, char ** error);

/// What the templates support: {"explicit": bool (false when llama.cpp fell back to ChatML),
/// "capabilities": {"supports_tools": bool, "supports_system_role": bool, …},
/// "supports_thinking": bool}. NULL with `*error` set on failure.
char * rbee_chat_capabilities(const rbee_chat_templates * templates, char ** error);

/// Converts a JSON schema (JSON text) to a GBNF grammar with llama.cpp's converter. An object's
/// properties come in the order its `required` lists them, then the others as given. Returns the
/// grammar, or NULL with `*error` set: the converter's message (it names the schema path), or the
/// `pattern` the converter cannot enforce (it would accept any string in its place).
char * rbee_json_schema_to_grammar(const char * schema_json, char ** error);

/// Checks GBNF text with llama.cpp's grammar parser. Returns NULL when it parses and defines
/// `root` and every rule it uses; else a message that starts with the line and column of the
/// fault. `vocab` (may be NULL) resolves token references such as `<[1234]>`.
char * rbee_grammar_check(const struct llama_vocab * vocab, const char * grammar);

/// Frees a string this API returned.
void rbee_chat_string_free(char * string);

#ifdef __cplusplus
}
#endif

#endif
