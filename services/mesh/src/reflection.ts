/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) on every service port, so that
 * grpcurl and `buf curl` can list and call the services without the protos.
 *
 * A client opens one bidirectional stream and asks, one request at a time: which services are
 * served (list_services), which file declares a symbol (file_containing_symbol), a file by
 * name, or the extensions of a message type. Files come back as serialized
 * FileDescriptorProtos, each with all the files it imports (transitively), which is what the
 * clients expect; they drop what they already have.
 */
import { toBinary, type DescExtension, type DescFile, type DescMessage, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { Health, reflectionV1, reflectionV1alpha } from "@linquid/contracts";

/** What the reflection service knows: the files of the served services and their imports. */
interface Index {
  services: string[];
  files: Map<string, DescFile>;
  symbols: Map<string, DescFile>;
  extensions: DescExtension[];
}

function buildIndex(served: readonly DescService[]): Index {
  const services = [...served, Health, reflectionV1.ServerReflection, reflectionV1alpha.ServerReflection];
  const index: Index = { services: services.map((s) => s.typeName), files: new Map(), symbols: new Map(), extensions: [] };
  const addMessage = (file: DescFile, m: DescMessage): void => {
    index.symbols.set(m.typeName, file);
    for (const f of m.fields) index.symbols.set(`${m.typeName}.${f.name}`, file);
    for (const n of m.nestedMessages) addMessage(file, n);
    for (const e of m.nestedEnums) index.symbols.set(e.typeName, file);
    for (const x of m.nestedExtensions) index.extensions.push(x);
  };
  const addFile = (file: DescFile): void => {
    if (index.files.has(file.proto.name)) return;
    index.files.set(file.proto.name, file);
    for (const s of file.services) {
      index.symbols.set(s.typeName, file);
      for (const m of s.methods) index.symbols.set(`${s.typeName}.${m.name}`, file);
    }
    for (const m of file.messages) addMessage(file, m);
    for (const e of file.enums) index.symbols.set(e.typeName, file);
    for (const x of file.extensions) {
      index.symbols.set(x.typeName, file);
      index.extensions.push(x);
    }
    for (const d of file.dependencies) addFile(d);
  };
  for (const s of services) addFile(s.file);
  return index;
}

/** The file and everything it imports, each once, serialized. */
function withImports(file: DescFile): Uint8Array[] {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const visit = (f: DescFile): void => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    for (const d of f.dependencies) visit(d);
  };
  visit(file);
  return out;
}

/** NOT_FOUND, as gRPC's own reflection servers answer an unknown name. */
const NOT_FOUND = 5;

type Request = reflectionV1.ServerReflectionRequest;
type Answer = NonNullable<MessageInitShape<typeof reflectionV1.ServerReflectionResponseSchema>["messageResponse"]>;

function answer(index: Index, req: Request): Answer {
  const files = (file: DescFile | undefined, what: string): Answer =>
    file === undefined
      ? { case: "errorResponse", value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` } }
      : { case: "fileDescriptorResponse", value: { fileDescriptorProto: withImports(file) } };
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return { case: "listServicesResponse", value: { service: index.services.map((name) => ({ name })) } };
    case "fileContainingSymbol":
      return files(index.symbols.get(r.value), `symbol ${r.value}`);
    case "fileByFilename":
      return files(index.files.get(r.value), `file ${r.value}`);
    case "fileContainingExtension": {
      const x = index.extensions.find((e) => e.extendee.typeName === r.value.containingType && e.number === r.value.extensionNumber);
      return files(x?.file, `extension ${r.value.extensionNumber} of ${r.value.containingType}`);
    }
    case "allExtensionNumbersOfType":
      return {
        case: "allExtensionNumbersResponse",
        value: { baseTypeName: r.value, extensionNumber: index.extensions.filter((e) => e.extendee.typeName === r.value).map((e) => e.number) },
      };
    default:
      return { case: "errorResponse", value: { errorCode: 3, errorMessage: "empty request" } };
  }
}

/** Registers both versions of the reflection service for the given served services. */
export function reflectionRoutes(router: ConnectRouter, served: readonly DescService[]): void {
  const index = buildIndex(served);
  // The two versions have the same messages, so one handler serves both.
  for (const service of [reflectionV1.ServerReflection, reflectionV1alpha.ServerReflection] as const) {
    router.service(service as typeof reflectionV1.ServerReflection, {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) {
          yield { validHost: req.host, originalRequest: req, messageResponse: answer(index, req) };
        }
      },
    });
  }
}
