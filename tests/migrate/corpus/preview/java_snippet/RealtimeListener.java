package com.contoso.voice;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.WebSocket;
import java.util.concurrent.CompletionStage;

public class RealtimeListener implements WebSocket.Listener {
    static final String URL =
        "wss://contoso.openai.azure.com/openai/realtime?api-version=2024-10-01-preview&deployment=gpt-4o-realtime-preview";

    public static WebSocket open(String key) {
        return HttpClient.newHttpClient().newWebSocketBuilder()
            .header("api-key", key)
            .header("OpenAI-Beta", "realtime=v1")
            .buildAsync(URI.create(URL), new RealtimeListener())
            .join();
    }

    static final String SESSION_UPDATE = """
        {"type": "session.update", "session": {"modalities": ["text"], "input_audio_format": "g711_ulaw"}}
        """;

    @Override
    public CompletionStage<?> onText(WebSocket ws, CharSequence data, boolean last) {
        String json = data.toString();
        if (json.contains("\"type\":\"response.text.delta\"")) {
            System.out.print(json);
        } else if ("response.audio.delta".equals(typeOf(json))) {
            play(json);
        }
        return WebSocket.Listener.super.onText(ws, data, last);
    }

    static String typeOf(String json) { return ""; }
    static void play(String json) {}
}
