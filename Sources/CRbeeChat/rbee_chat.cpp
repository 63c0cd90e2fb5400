// See rbee_chat.h. Every entry point is a try/catch around all of its work: an exception that
// crossed into Swift would terminate the process.
#include "rbee_chat.h"

#include "chat.h"
#include "json-schema-to-grammar.h"
#include "json.h"
#include "log.h"
// Internal to llama.cpp (installed from its source tree by scripts/fetch-llama.sh): the public
// API only says whether a grammar parses, the parser itself says where it does not.
#include "llama-grammar.h"

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <string>

struct rbee_chat_templates {
    common_chat_templates_ptr templates;
};

namespace {

char * copy(const std::string & text) {
    char * result = static_cast<char *>(std::malloc(text.size() + 1));
    if (result != nullptr) {
        std::memcpy(result, text.data(), text.size());
        result[text.size()] = '\0';
    }
    return result;
}

void fail(char ** error, const std::string & message) {
    if (error != nullptr) {
        *error = copy(message);
    }
}

// Runs one entry point's work: any exception becomes `*error` and the `failed` value, so none
// ever reaches Swift.
template <typename T, typename Body> T guarded(char ** error, T failed, Body && body) {
    try {
        return body();
    } catch (const std::exception & e) {
        fail(error, e.what());
    } catch (...) {
        fail(error, "unknown C++ exception");
    }
    return failed;
}

// common logs from its own thread to stdout; its warnings (a template fix applied, a token the
// vocabulary lacks) are not the daemons' to print, and its errors come back as error values.
void quiet_common_log() {
    static std::once_flag once;
    std::call_once(once, [] { common_log_pause(common_log_main()); });
}

// A required call's grammar as llama.cpp builds it lets free text come first, up to the call's
// marker (`until-N?` in the root rule): a small model then writes on and never calls. Without
// it the answer is the call (after the format's optional reasoning).
std::string without_text_before_calls(const std::string & grammar) {
    static const std::regex free_text(R"( until-[0-9]+\?( |$))");
    std::string result;
    size_t start = 0;
    while (start < grammar.size()) {
        size_t end = grammar.find('\n', start);
        if (end == std::string::npos) {
            end = grammar.size();
        }
        std::string line = grammar.substr(start, end - start);
        if (line.rfind("root ::= ", 0) == 0) {
            line = std::regex_replace(line, free_text, "$1", std::regex_constants::format_first_only);
        }
        result += line;
        if (end < grammar.size()) {
            result += '\n';
        }
        start = end + 1;
    }
    return result;
}

// The generic tool format, for templates that describe no tools (llama.cpp had it as its
// fallback once): the tools go into the system message, and the answer is one JSON object,
// {"tool_call": {"name", "arguments"}} ({"tool_calls": [...]} with parallel calls) or, unless a
// call is required, {"response": "..."}. Moves the tools out of `inputs` and returns the grammar.
std::string generic_tool_format(common_chat_templates_inputs & inputs) {
    common_json calls = common_json::array();
    common_json described = common_json::array();
    for (const auto & tool : inputs.tools) {
        const common_json parameters = tool.parameters.empty() ? common_json::object() : common_json::parse(tool.parameters);
        common_json name = common_json::object();
        name["const"] = tool.name;
        common_json properties = common_json::object();
        properties["name"]      = name;
        properties["arguments"] = parameters;
        common_json required = common_json::array();
        required.push_back("name");
        required.push_back("arguments");
        common_json call = common_json::object();
        call["type"]       = "object";
        call["properties"] = properties;
        call["required"]   = required;
        calls.push_back(call);
        common_json entry = common_json::object();
        entry["name"]        = tool.name;
        entry["description"] = tool.description;
        entry["parameters"]  = parameters;
        described.push_back(entry);
    }
    common_json one_call = common_json::object();
    if (calls.size() == 1) {
        one_call = calls.at(0);
    } else {
        one_call["anyOf"] = calls;
    }
    const std::string key = inputs.parallel_tool_calls ? "tool_calls" : "tool_call";
    common_json call_value = one_call;
    if (inputs.parallel_tool_calls) {
        call_value = common_json::object();
        call_value["type"]     = "array";
        call_value["items"]    = one_call;
        call_value["minItems"] = 1;
    }
    common_json call_properties = common_json::object();
    call_properties[key] = call_value;
    common_json call_required = common_json::array();
    call_required.push_back(key);
    common_json calling = common_json::object();
    calling["type"]       = "object";
    calling["properties"] = call_properties;
    calling["required"]   = call_required;
    const bool required   = inputs.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED;
    common_json schema    = calling;
    if (!required) {
        common_json text = common_json::object();
        text["type"] = "string";
        common_json response_properties = common_json::object();
        response_properties["response"] = text;
        common_json response_required = common_json::array();
        response_required.push_back("response");
        common_json responding = common_json::object();
        responding["type"]       = "object";
        responding["properties"] = response_properties;
        responding["required"]   = response_required;
        common_json either = common_json::array();
        either.push_back(calling);
        either.push_back(responding);
        schema = common_json::object();
        schema["anyOf"] = either;
    }
    std::string instructions = "You can call any of the following tools to satisfy the user's requests: " + described.dump(2) +
                               "\n\nRespond in JSON format, " +
                               (required ? "with `" + key + "` (a request to call " + (inputs.parallel_tool_calls ? "tools" : "a tool") + ")."
                                         : "either with `" + key + "` (a request to call " + (inputs.parallel_tool_calls ? "tools" : "a tool") +
                                               ") or with `response` (your reply to the user's request).") +
                               " Example: {\"" + key + "\": " + (inputs.parallel_tool_calls ? "[" : "") +
                               "{\"name\": \"" + inputs.tools.front().name + "\", \"arguments\": {...}}" + (inputs.parallel_tool_calls ? "]" : "") + "}";
    if (!inputs.messages.empty() && inputs.messages.front().role == "system") {
        inputs.messages.front().content += "\n\n" + instructions;
    } else {
        common_chat_msg system;
        system.role    = "system";
        system.content = instructions;
        inputs.messages.insert(inputs.messages.begin(), system);
    }
    inputs.tools.clear();
    inputs.tool_choice = COMMON_CHAT_TOOL_CHOICE_NONE;
    return json_schema_to_grammar(schema, true);
}

}  // namespace

extern "C" rbee_chat_templates * rbee_chat_templates_init(
    const struct llama_model * model, const char * template_text, const char * bos_token, const char * eos_token, char ** error) {
    return guarded(error, static_cast<rbee_chat_templates *>(nullptr), [&]() -> rbee_chat_templates * {
        quiet_common_log();
        if (model == nullptr && template_text == nullptr) {
            fail(error, "neither a model nor a template");
            return nullptr;
        }
        // common_chat_templates_init rethrows a parse error as a sliced std::exception, which has
        // lost its message: parse the template once here first, to report the parser's own words.
        const char * source = template_text;
        if (source == nullptr && model != nullptr) {
            source = llama_model_chat_template(model, nullptr);
        }
        if (source != nullptr) {
            const common_chat_template probe(source, bos_token != nullptr ? bos_token : "", eos_token != nullptr ? eos_token : "");
            (void) probe;
        }
        auto result = std::make_unique<rbee_chat_templates>();
        result->templates = common_chat_templates_init(
            model, template_text != nullptr ? template_text : "", bos_token != nullptr ? bos_token : "",
            eos_token != nullptr ? eos_token : "");
        return result.release();
    });
}

extern "C" void rbee_chat_templates_free(rbee_chat_templates * templates) {
    try {
        delete templates;
    } catch (...) {
    }
}

extern "C" char * rbee_chat_render(const rbee_chat_templates * templates, const char * request_json, char ** error) {
    return guarded(error, static_cast<char *>(nullptr), [&]() -> char * {
        if (templates == nullptr || request_json == nullptr) {
            fail(error, "no templates or no request");
            return nullptr;
        }
        const common_json request = common_json::parse(request_json);
        if (!request.is_object() || !request.contains("messages")) {
            fail(error, "the request must be an object with messages");
            return nullptr;
        }
        common_chat_templates_inputs inputs;
        inputs.messages              = common_chat_msgs_parse_oaicompat(request.at("messages"));
        inputs.add_generation_prompt = request.value("add_generation_prompt", true);
        inputs.enable_thinking       = request.value("enable_thinking", true);
        if (request.contains("tools")) {
            inputs.tools = common_chat_tools_parse_oaicompat(request.at("tools"));
        }
        inputs.tool_choice         = common_chat_tool_choice_parse_oaicompat(request.value("tool_choice", std::string("auto")));
        inputs.parallel_tool_calls = request.value("parallel_tool_calls", false);
        inputs.reasoning_format    = common_reasoning_format_from_name(request.value("reasoning_format", std::string("none")));
        if (request.contains("chat_template_kwargs")) {
            const common_json & kwargs = request.at("chat_template_kwargs");
            if (!kwargs.is_object()) {
                fail(error, "chat_template_kwargs must be an object");
                return nullptr;
            }
            for (const auto & item : kwargs.items()) {
                inputs.chat_template_kwargs[item.key()] = item.value().dump();
                // The template reads it from the context; llama.cpp's own handling of the
                // generation prompt reads the input.
                if (item.key() == "enable_thinking" && item.value().is_boolean()) {
                    inputs.enable_thinking = item.value().get<bool>();
                }
            }
        }
        // A template in which llama.cpp finds no tool-call format (it then makes no grammar even for a
        // required call) renders no tools: the generic format stands in (the tools in a system
        // message, the answer a JSON object that a grammar holds to).
        bool generic = false;
        if (!inputs.tools.empty() && inputs.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE) {
            common_chat_templates_inputs probe = inputs;
            probe.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED;
            generic = common_chat_templates_apply(templates->templates.get(), probe).grammar.empty();
        }
        std::string generic_grammar;
        if (generic) {
            generic_grammar = generic_tool_format(inputs);
        }
        common_chat_params params = common_chat_templates_apply(templates->templates.get(), inputs);
        if (generic) {
            params.grammar      = generic_grammar;
            params.grammar_lazy = false;
            params.grammar_triggers.clear();
        } else if (inputs.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED && !params.grammar_lazy) {
            params.grammar = without_text_before_calls(params.grammar);
        }
        common_json stops = common_json::array();
        for (const auto & stop : params.additional_stops) {
            stops.push_back(stop);
        }
        common_json result = common_json::object();
        result["prompt"]            = params.prompt;
        result["additional_stops"]  = stops;
        result["supports_thinking"] = params.supports_thinking;
        // What parsing the output and constraining it need (rbee_chat_parser_init,
        // rbee_chat_grammar_sampler_init take this object as it is).
        result["format"]            = static_cast<int>(params.format);
        result["parser"]            = params.parser;
        result["generation_prompt"] = params.generation_prompt;
        result["reasoning_format"]  = request.value("reasoning_format", std::string("none"));
        result["generic_tools"]     = generic;
        // The generation prompt is fed to a tool-call grammar of the template's own format only.
        result["grammar_prefill"]   = !generic;
        result["grammar"]           = params.grammar;
        result["grammar_lazy"]      = params.grammar_lazy;
        common_json triggers = common_json::array();
        for (const auto & trigger : params.grammar_triggers) {
            common_json item = common_json::object();
            item["type"]  = static_cast<int>(trigger.type);
            item["value"] = trigger.value;
            item["token"] = static_cast<int>(trigger.token);
            triggers.push_back(item);
        }
        result["grammar_triggers"] = triggers;
        common_json preserved = common_json::array();
        for (const auto & token : params.preserved_tokens) {
            preserved.push_back(token);
        }
        result["preserved_tokens"] = preserved;
        return copy(result.dump());
    });
}

extern "C" char * rbee_chat_capabilities(const rbee_chat_templates * templates, char ** error) {
    return guarded(error, static_cast<char *>(nullptr), [&]() -> char * {
        if (templates == nullptr) {
            fail(error, "no templates");
            return nullptr;
        }
        common_json capabilities = common_json::object();
        for (const auto & [name, supported] : common_chat_templates_get_caps(templates->templates.get())) {
            capabilities[name] = supported;
        }
        common_json result = common_json::object();
        result["explicit"]          = common_chat_templates_was_explicit(templates->templates.get());
        result["capabilities"]      = capabilities;
        result["supports_thinking"] = common_chat_templates_support_enable_thinking(templates->templates.get());
        return copy(result.dump());
    });
}

namespace {

// Orders each object's properties as its `required` lists them, then the others: the converter
// writes them in the order given, and a Swift dictionary has passed the schema on in none.
common_json order_properties(const common_json & schema) {
    if (schema.is_array()) {
        common_json result = common_json::array();
        for (size_t i = 0; i < schema.size(); i++) {
            result.push_back(order_properties(schema.at(i)));
        }
        return result;
    }
    if (!schema.is_object()) {
        return schema;
    }
    common_json result = common_json::object();
    for (const auto & item : schema.items()) {
        common_json value = order_properties(item.value());
        if (item.key() == "properties" && value.is_object() && schema.contains("required") && schema.at("required").is_array()) {
            common_json ordered = common_json::object();
            const common_json & required = schema.at("required");
            for (size_t i = 0; i < required.size(); i++) {
                if (required.at(i).is_string()) {
                    const std::string name = required.at(i).get<std::string>();
                    if (value.contains(name) && !ordered.contains(name)) {
                        ordered[name] = value.at(name);
                    }
                }
            }
            for (const auto & property : value.items()) {
                if (!ordered.contains(property.key())) {
                    ordered[property.key()] = property.value();
                }
            }
            value = ordered;
        }
        result[item.key()] = value;
    }
    return result;
}

// The first `pattern` the converter cannot enforce: for those it warns and accepts any string,
// which a client asking for the pattern must be told. Empty when every pattern converts.
std::string unenforced_pattern(const common_json & schema, const std::string & path, const std::string & any_string) {
    if (schema.is_array()) {
        for (size_t i = 0; i < schema.size(); i++) {
            std::string found = unenforced_pattern(schema.at(i), path + "[" + std::to_string(i) + "]", any_string);
            if (!found.empty()) {
                return found;
            }
        }
        return "";
    }
    if (!schema.is_object()) {
        return "";
    }
    for (const auto & item : schema.items()) {
        if (item.key() == "pattern" && item.value().is_string()) {
            const std::string pattern = item.value().get<std::string>();
            common_json probe = common_json::object();
            probe["type"]    = "string";
            probe["pattern"] = pattern;
            if (json_schema_to_grammar(probe, true) == any_string) {
                return (path.empty() ? "" : path + ": ") + "pattern " + pattern +
                       " is not supported by the grammar (it takes a pattern anchored with ^ and $, in a subset of regex syntax)";
            }
            continue;
        }
        std::string found = unenforced_pattern(item.value(), path.empty() ? item.key() : path + "." + item.key(), any_string);
        if (!found.empty()) {
            return found;
        }
    }
    return "";
}

// Skips spaces, newlines and comments before the first rule, as the parser does between rules.
const char * skip_space(const char * pos) {
    while (*pos != '\0') {
        if (*pos == ' ' || *pos == '\t' || *pos == '\r' || *pos == '\n') {
            pos++;
        } else if (*pos == '#') {
            while (*pos != '\0' && *pos != '\r' && *pos != '\n') {
                pos++;
            }
        } else {
            break;
        }
    }
    return pos;
}

std::string line_and_column(const std::string & text, size_t offset) {
    size_t line = 1;
    size_t line_start = 0;
    for (size_t i = 0; i < offset && i < text.size(); i++) {
        if (text[i] == '\n') {
            line++;
            line_start = i + 1;
        }
    }
    return "line " + std::to_string(line) + ", column " + std::to_string(offset - line_start + 1);
}

}  // namespace

extern "C" char * rbee_json_schema_to_grammar(const char * schema_json, char ** error) {
    return guarded(error, static_cast<char *>(nullptr), [&]() -> char * {
        quiet_common_log();
        if (schema_json == nullptr) {
            fail(error, "no schema");
            return nullptr;
        }
        const common_json schema = order_properties(common_json::parse(schema_json));
        std::string grammar;
        try {
            grammar = json_schema_to_grammar(schema, true);
        } catch (const std::exception & e) {
            // "JSON schema conversion failed:\n<reasons, one a line>" → one line.
            std::string message = e.what();
            const std::string prefix = "JSON schema conversion failed:\n";
            if (message.rfind(prefix, 0) == 0) {
                message = message.substr(prefix.size());
            }
            for (auto & c : message) {
                if (c == '\n') {
                    c = ';';
                }
            }
            fail(error, message);
            return nullptr;
        }
        // What the converter makes of a pattern it gives up on (an unanchored one, always).
        static const std::string any_string = [] {
            common_json probe = common_json::object();
            probe["type"]    = "string";
            probe["pattern"] = "unanchored";
            return json_schema_to_grammar(probe, true);
        }();
        const std::string pattern_problem = unenforced_pattern(schema, "", any_string);
        if (!pattern_problem.empty()) {
            fail(error, pattern_problem);
            return nullptr;
        }
        return copy(grammar);
    });
}

extern "C" char * rbee_grammar_check(const struct llama_vocab * vocab, const char * grammar) {
    char * failure = nullptr;
    char * result = guarded(&failure, static_cast<char *>(nullptr), [&]() -> char * {
        if (grammar == nullptr) {
            return copy("no grammar");
        }
        const std::string text(grammar);
        const char * start = text.c_str();
        llama_grammar_parser parser(vocab);
        const char * pos = skip_space(start);
        while (*pos != '\0') {
            const char * rule = pos;
            try {
                pos = parser.parse_rule(pos);
            } catch (const std::exception & e) {
                // The parser's messages end with " at " and the text from the fault on.
                std::string message = e.what();
                size_t offset = rule - start;
                for (size_t at = message.find(" at "); at != std::string::npos; at = message.find(" at ", at + 1)) {
                    const std::string rest = message.substr(at + 4);
                    if (rest.size() <= text.size() && text.compare(text.size() - rest.size(), rest.size(), rest) == 0) {
                        offset = text.size() - rest.size();
                        message.resize(at);
                        break;
                    }
                }
                return copy(line_and_column(text, offset) + ": " + message);
            }
        }
        if (parser.symbol_ids.find("root") == parser.symbol_ids.end()) {
            return copy("the grammar has no root rule (root ::= ...)");
        }
        for (const auto & [name, id] : parser.symbol_ids) {
            if (id >= parser.rules.size() || parser.rules[id].empty()) {
                return copy("rule " + name + " is used but never defined");
            }
        }
        return nullptr;
    });
    return failure != nullptr ? failure : result;
}

// ---- Parsing the output of a chat ----

struct rbee_chat_parser {
    common_chat_parser_params params;
    std::string               text;
    common_chat_msg           message;
    std::vector<std::string>  ids;
    std::set<size_t>          named;  // tool calls whose id and name were sent
    bool                      failed  = false;
    bool                      generic = false;  // the generic tool format: one JSON object
};

namespace {

std::string new_tool_call_id() {
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    thread_local std::mt19937_64 generator{ std::random_device{}() };
    std::uniform_int_distribution<size_t> pick(0, sizeof(alphabet) - 2);
    std::string id = "call_";
    for (int i = 0; i < 24; i++) {
        id += alphabet[pick(generator)];
    }
    return id;
}

common_json message_json(const common_chat_msg & message) {
    common_json result = common_json::object();
    result["content"]           = message.content;
    result["reasoning_content"] = message.reasoning_content;
    common_json calls = common_json::array();
    for (const auto & call : message.tool_calls) {
        common_json item = common_json::object();
        item["id"]        = call.id;
        item["name"]      = call.name;
        item["arguments"] = call.arguments;
        calls.push_back(item);
    }
    result["tool_calls"] = calls;
    return result;
}

}  // namespace

extern "C" rbee_chat_parser * rbee_chat_parser_init(const char * rendering_json, char ** error) {
    return guarded(error, static_cast<rbee_chat_parser *>(nullptr), [&]() -> rbee_chat_parser * {
        if (rendering_json == nullptr) {
            fail(error, "no rendering");
            return nullptr;
        }
        const common_json rendering = common_json::parse(rendering_json);
        auto parser = std::make_unique<rbee_chat_parser>();
        parser->params.format            = static_cast<common_chat_format>(rendering.value("format", 0));
        parser->params.generation_prompt = rendering.value("generation_prompt", std::string());
        parser->params.reasoning_format  = common_reasoning_format_from_name(rendering.value("reasoning_format", std::string("none")));
        parser->params.parse_tool_calls  = rendering.value("parse_tool_calls", true);
        parser->generic                  = rendering.value("generic_tools", false);
        const std::string serialized     = rendering.value("parser", std::string());
        if (!serialized.empty()) {
            parser->params.parser.load(serialized);
        }
        return parser.release();
    });
}

extern "C" void rbee_chat_parser_free(rbee_chat_parser * parser) {
    try {
        delete parser;
    } catch (...) {
    }
}

extern "C" char * rbee_chat_parser_feed(rbee_chat_parser * parser, const char * text, size_t length, bool is_final, char ** error) {
    return guarded(error, static_cast<char *>(nullptr), [&]() -> char * {
        if (parser == nullptr) {
            fail(error, "no parser");
            return nullptr;
        }
        if (text != nullptr) {
            parser->text.append(text, length);
        }
        common_chat_msg updated;
        bool parsed = false;
        if (parser->generic) {
            // One JSON object, read when it is whole: its call(s), or its response as content.
            if (!is_final) {
                parsed = false;
            } else {
                try {
                    const common_json answer = common_json::parse(parser->text);
                    updated.role = "assistant";
                    std::vector<const common_json *> calls;
                    if (answer.contains("tool_call")) {
                        calls.push_back(&answer.at("tool_call"));
                    }
                    if (answer.contains("tool_calls")) {
                        const common_json & list = answer.at("tool_calls");
                        for (size_t i = 0; i < list.size(); i++) {
                            calls.push_back(&list.at(i));
                        }
                    }
                    for (const auto * call : calls) {
                        common_chat_tool_call entry;
                        entry.name      = call->at("name").get<std::string>();
                        entry.arguments = call->contains("arguments") ? call->at("arguments").dump() : "{}";
                        updated.tool_calls.push_back(entry);
                    }
                    if (answer.contains("response") && answer.at("response").is_string()) {
                        updated.content = answer.at("response").get<std::string>();
                    }
                    updated.set_tool_call_ids(parser->ids, new_tool_call_id);
                    parsed = true;
                } catch (const std::exception &) {
                }
            }
        } else if (!parser->failed) {
            try {
                updated = common_chat_parse(parser->text, !is_final, parser->params);
                updated.set_tool_call_ids(parser->ids, new_tool_call_id);
                parsed = true;
            } catch (const std::exception &) {
                // Output the format's parser cannot read: while partial, wait for more; at the end
                // (or once it has failed for good) it is all plain content.
            }
        }
        if (!parsed && is_final) {
            updated = common_chat_msg();
            updated.role    = "assistant";
            updated.content = parser->text;
            if (!parser->message.tool_calls.empty() || parser->message.content != parser->text.substr(0, parser->message.content.size())) {
                // What was streamed cannot be extended into plain content: keep it as it stands.
                updated = parser->message;
            }
            parser->failed = true;
            parsed         = true;
        }
        std::vector<common_chat_msg_diff> diffs;
        if (parsed && !updated.empty()) {
            try {
                diffs = common_chat_msg_diff::compute_diffs(parser->message, updated);
                parser->message = updated;
            } catch (const std::exception &) {
                diffs.clear();  // a reading that contradicts what was sent: keep what was sent
            }
        }
        // OpenAI clients take a call's id and name once, before its arguments: a name is sent
        // when its arguments start (or at the end), never while it may still grow.
        common_json out = common_json::array();
        const auto & calls = parser->message.tool_calls;
        for (auto & diff : diffs) {
            if (diff.tool_call_index == std::string::npos) {
                common_json item = common_json::object();
                if (!diff.reasoning_content_delta.empty()) {
                    item["reasoning_content"] = diff.reasoning_content_delta;
                }
                if (!diff.content_delta.empty()) {
                    item["content"] = diff.content_delta;
                }
                if (!item.empty()) {
                    out.push_back(item);
                }
                continue;
            }
            const size_t index = diff.tool_call_index;
            if (index >= calls.size()) {
                continue;
            }
            common_json item = common_json::object();
            item["tool_call_index"] = static_cast<int>(index);
            if (parser->named.count(index) == 0) {
                if (diff.tool_call_delta.arguments.empty() && !is_final) {
                    continue;
                }
                item["id"]   = calls[index].id;
                item["name"] = calls[index].name;
                parser->named.insert(index);
            } else if (diff.tool_call_delta.arguments.empty()) {
                continue;
            }
            item["arguments"] = diff.tool_call_delta.arguments;
            out.push_back(item);
        }
        if (is_final) {
            for (size_t index = 0; index < calls.size(); index++) {
                if (parser->named.count(index) == 0 && !calls[index].name.empty()) {
                    common_json item = common_json::object();
                    item["tool_call_index"] = static_cast<int>(index);
                    item["id"]              = calls[index].id;
                    item["name"]            = calls[index].name;
                    item["arguments"]       = calls[index].arguments;
                    out.push_back(item);
                    parser->named.insert(index);
                }
            }
        }
        common_json result = common_json::object();
        result["deltas"]  = out;
        result["message"] = message_json(parser->message);
        return copy(result.dump());
    });
}

extern "C" struct llama_sampler * rbee_chat_grammar_sampler_init(const struct llama_vocab * vocab, const char * rendering_json, char ** error) {
    return guarded(error, static_cast<struct llama_sampler *>(nullptr), [&]() -> struct llama_sampler * {
        if (vocab == nullptr || rendering_json == nullptr) {
            fail(error, "no vocabulary or no rendering");
            return nullptr;
        }
        const common_json rendering = common_json::parse(rendering_json);
        const std::string grammar   = rendering.value("grammar", std::string());
        if (grammar.empty()) {
            fail(error, "the rendering has no grammar");
            return nullptr;
        }
        const bool lazy = rendering.value("grammar_lazy", false);
        // The triggers as llama.cpp's common sampler turns them into patterns and tokens.
        std::vector<std::string> patterns;
        std::vector<llama_token> tokens;
        if (rendering.contains("grammar_triggers")) {
            const common_json & triggers = rendering.at("grammar_triggers");
            for (size_t i = 0; i < triggers.size(); i++) {
                const common_json & trigger = triggers.at(i);
                const auto type = static_cast<common_grammar_trigger_type>(trigger.value("type", 0));
                const std::string value = trigger.value("value", std::string());
                switch (type) {
                    case COMMON_GRAMMAR_TRIGGER_TYPE_WORD:
                        patterns.push_back(regex_escape(value));
                        break;
                    case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN:
                        patterns.push_back(value);
                        break;
                    case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL:
                        patterns.push_back(value.empty() ? "^$" : (value.front() != '^' ? "^" : "") + value + (value.back() != '$' ? "$" : ""));
                        break;
                    case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN:
                        tokens.push_back(static_cast<llama_token>(trigger.value("token", -1)));
                        break;
                }
            }
        }
        std::vector<const char *> pattern_pointers;
        for (const auto & pattern : patterns) {
            pattern_pointers.push_back(pattern.c_str());
        }
        struct llama_sampler * sampler =
            lazy ? llama_sampler_init_grammar_lazy_patterns(vocab, grammar.c_str(), "root", pattern_pointers.data(), pattern_pointers.size(),
                                                            tokens.data(), tokens.size())
                 : llama_sampler_init_grammar(vocab, grammar.c_str(), "root");
        if (sampler == nullptr) {
            fail(error, "llama.cpp cannot build the tool calls' grammar");
            return nullptr;
        }
        // A tool-call grammar starts where the template's generation prompt does: feed it that
        // prompt first, as the common sampler does (a leading space a tokenizer adds is skipped).
        const std::string generation_prompt = rendering.value("generation_prompt", std::string());
        if (!lazy && rendering.value("grammar_prefill", true) && !generation_prompt.empty()) {
            const auto prefill = common_tokenize(vocab, generation_prompt, false, true);
            try {
                for (size_t i = 0; i < prefill.size(); i++) {
                    const std::string piece = common_token_to_piece(vocab, prefill[i], true);
                    if (i == 0 && !piece.empty() && std::isspace(static_cast<unsigned char>(piece[0])) &&
                        !std::isspace(static_cast<unsigned char>(generation_prompt[0]))) {
                        continue;
                    }
                    llama_sampler_accept(sampler, prefill[i]);
                }
            } catch (...) {
                llama_sampler_free(sampler);
                throw;
            }
        }
        return sampler;
    });
}

extern "C" void rbee_chat_string_free(char * string) { std::free(string); }
