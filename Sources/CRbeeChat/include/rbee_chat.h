// The chat templates of llama.cpp's common library (Jinja rendering, template fixes, capability
// detection) and its grammar tools (JSON schema conversion, GBNF parsing) behind a narrow C API
// with JSON strings across it, so Swift never sees C++ and no C++ exception ever reaches Swift:
// every function catches them all and reports them as an error.
#ifndef RBEE_CHAT_H
#define RBEE_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct llama_model;
struct llama_vocab;
struct llama_sampler;

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
/// array of text parts; assistant `tool_calls`, `tool` messages with `tool_call_id`],
/// "add_generation_prompt": bool (default true), "chat_template_kwargs": {name: any JSON value},
/// "enable_thinking": bool (default true), "tools": [OpenAI tools], "tool_choice": "auto" |
/// "none" | "required", "parallel_tool_calls": bool, "reasoning_format": "none" | "auto" | …}.
/// Returns {"prompt", "additional_stops": [...], "supports_thinking", and what the output needs:
/// "format", "parser", "generation_prompt", "reasoning_format", "grammar", "grammar_lazy",
/// "grammar_triggers": [{"type", "value", "token"}], "preserved_tokens": [...]}, or NULL with
/// `*error` set (the template's own message when it raised).
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

/// The parser of one generation's output, in the format its rendering chose: reasoning, content
/// and tool calls, as llama.cpp's `common_chat_parse` reads them.
typedef struct rbee_chat_parser rbee_chat_parser;

/// A parser for the output of a rendering (the JSON `rbee_chat_render` returned; "parse_tool_calls"
/// may be added, default true). NULL with `*error` set on failure.
rbee_chat_parser * rbee_chat_parser_init(const char * rendering_json, char ** error);

/// Adds `length` bytes of generated text and reads all the text so far again (as partial until
/// `is_final`). Returns {"deltas": [{"content"} | {"reasoning_content"} | {"tool_call_index",
/// "id", "name", "arguments"}], "message": {"content", "reasoning_content", "tool_calls": [{"id",
/// "name", "arguments"}]}}: the deltas since the last call, a tool call's id and name in its first
/// delta only. Output the format cannot read ends as plain content, never as an error.
char * rbee_chat_parser_feed(rbee_chat_parser * parser, const char * text, size_t length, bool is_final, char ** error);

void rbee_chat_parser_free(rbee_chat_parser * parser);

/// The grammar sampler a rendering with tools asks for (its "grammar", lazy until one of its
/// "grammar_triggers" when "grammar_lazy"), as llama.cpp's common sampler builds it, with the
/// generation prompt fed to a non-lazy grammar. NULL with `*error` set when there is none or it
/// does not build. Free it with `llama_sampler_free`.
struct llama_sampler * rbee_chat_grammar_sampler_init(const struct llama_vocab * vocab, const char * rendering_json, char ** error);

/// Frees a string this API returned.
void rbee_chat_string_free(char * string);

#ifdef __cplusplus
}
#endif

#endif
