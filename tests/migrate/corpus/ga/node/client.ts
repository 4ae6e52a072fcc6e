import OpenAI from "openai";
import { OpenAIRealtimeWebSocket } from "openai/realtime/websocket";

export function connect(client: OpenAI): OpenAIRealtimeWebSocket {
  const rt = new OpenAIRealtimeWebSocket({ model: "gpt-realtime" }, client);
  rt.socket.addEventListener("open", () => {
    rt.send({ type: "session.update", session: { type: "realtime", output_modalities: ["text"] } });
  });
  rt.on("response.output_text.delta", (event) => console.log(event.delta));
  return rt;
}
