package com.contoso.voice;

public class Listener {
    static final String URL = "wss://contoso.openai.azure.com/openai/v1/realtime?model=gpt-realtime";
    static final String SESSION_UPDATE = """
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
        """;

    static boolean isDelta(String type) {
        return "response.output_text.delta".equals(type);
    }
}
