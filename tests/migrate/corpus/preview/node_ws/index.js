// Node.js console client for the Azure OpenAI realtime Preview API, using the `ws` package.
import WebSocket from "ws";

const resource = process.env.AZURE_OPENAI_RESOURCE;
const deployment = process.env.AZURE_OPENAI_DEPLOYMENT ?? "gpt-4o-realtime-preview";
const url = `wss://${resource}.openai.azure.com/openai/realtime?api-version=2024-10-01-preview&deployment=${deployment}`;

const ws = new WebSocket(url, {
  headers: {
    "api-key": process.env.AZURE_OPENAI_API_KEY,
    "OpenAI-Beta": "realtime=v1",
  },
});

ws.on("open", () => {
  ws.send(
    JSON.stringify({
      type: "session.update",
      session: {
        modalities: ["text", "audio"],
        voice: "shimmer",
        input_audio_format: "pcm16",
        turn_detection: { type: "server_vad" },
      },
    }),
  );
  ws.send(
    JSON.stringify({
      type: "conversation.item.create",
      item: {
        type: "message",
        role: "assistant",
        content: [{ type: "text", text: "Earlier I said hello." }],
      },
    }),
  );
  ws.send(JSON.stringify({ type: "response.create" }));
});

ws.on("message", (raw) => {
  const event = JSON.parse(raw.toString());
  switch (event.type) {
    case "response.text.delta":
      process.stdout.write(event.delta);
      break;
    case "response.audio.delta":
      speaker.write(Buffer.from(event.delta, "base64"));
      break;
    case "response.audio.done":
      speaker.end();
      break;
    case "response.audio_transcript.done":
      console.log("\n[transcript]", event.transcript);
      break;
    case "conversation.created":
      console.log("conversation", event.conversation.id);
      break;
    case "error":
      console.error(event.error);
      break;
  }
});

const speaker = { write() {}, end() {} };
