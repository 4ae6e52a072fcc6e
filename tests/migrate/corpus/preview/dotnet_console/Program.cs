// Console app talking to the Azure OpenAI realtime Preview endpoint with ClientWebSocket.
using System;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using OpenAI.RealtimeConversation;

class Program
{
    const string Resource = "contoso-aoai";
    const string Deployment = "gpt-4o-realtime-preview";

    static async Task Main()
    {
        using var ws = new ClientWebSocket();
        ws.Options.SetRequestHeader("api-key", Environment.GetEnvironmentVariable("AZURE_OPENAI_API_KEY"));
        ws.Options.SetRequestHeader("OpenAI-Beta", "realtime=v1");
        var uri = new Uri($"wss://{Resource}.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment={Deployment}");
        await ws.ConnectAsync(uri, CancellationToken.None);

        var update = new
        {
            type = "session.update",
            session = new
            {
                modalities = new[] { "text", "audio" },
                voice = "alloy",
                input_audio_format = "pcm16",
                temperature = 0.7,
            },
        };
        await Send(ws, JsonSerializer.Serialize(update));

        var buffer = new byte[1 << 16];
        while (ws.State == WebSocketState.Open)
        {
            var result = await ws.ReceiveAsync(buffer, CancellationToken.None);
            using var doc = JsonDocument.Parse(Encoding.UTF8.GetString(buffer, 0, result.Count));
            switch (doc.RootElement.GetProperty("type").GetString())
            {
                case "response.audio_transcript.delta":
                    Console.Write(doc.RootElement.GetProperty("delta").GetString());
                    break;
                case "response.text.delta":
                    Console.Write(doc.RootElement.GetProperty("delta").GetString());
                    break;
                case "response.done":
                    return;
            }
        }
    }

    static Task Send(ClientWebSocket ws, string json) =>
        ws.SendAsync(Encoding.UTF8.GetBytes(json), WebSocketMessageType.Text, true, CancellationToken.None);
}
