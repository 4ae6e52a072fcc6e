using System;
using System.Net.WebSockets;
using System.Text.Json;
using System.Threading;

class Program
{
    static async System.Threading.Tasks.Task Main()
    {
        using var ws = new ClientWebSocket();
        ws.Options.SetRequestHeader("Authorization", "Bearer " + Environment.GetEnvironmentVariable("KEY"));
        await ws.ConnectAsync(new Uri("wss://contoso.openai.azure.com/openai/v1/realtime?model=gpt-realtime"), CancellationToken.None);
        var update = new
        {
            type = "session.update",
            session = new { type = "realtime", output_modalities = new[] { "text" } },
        };
        Console.WriteLine(JsonSerializer.Serialize(update));
        switch (Console.ReadLine())
        {
            case "response.output_text.delta":
                break;
        }
    }
}
