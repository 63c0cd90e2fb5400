// See rbee_chat.h. Every entry point is a try/catch around all of its work: an exception that
// crossed into Swift would terminate the process.
#include "rbee_chat.h"

#include "chat.h"
#include "json.h"
#include "log.h"

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

extern "C" void rbee_chat_string_free(char * string) { std::free(string); }
