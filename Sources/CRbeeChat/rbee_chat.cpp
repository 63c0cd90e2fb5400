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

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
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
        const common_chat_params params = common_chat_templates_apply(templates->templates.get(), inputs);
        common_json stops = common_json::array();
        for (const auto & stop : params.additional_stops) {
            stops.push_back(stop);
        }
        common_json result = common_json::object();
        result["prompt"]            = params.prompt;
        result["additional_stops"]  = stops;
        result["supports_thinking"] = params.supports_thinking;
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

extern "C" void rbee_chat_string_free(char * string) { std::free(string); }
